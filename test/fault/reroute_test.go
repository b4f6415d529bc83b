//go:build fault

package fault

import (
	"context"
	"testing"
	"time"
)

// TestRerouteKillNine: a stream produced with kafka-go's hash of the
// recipient (FNV-1a: about three recipients in four are in another
// partition than their suppression slice, consumer.PartitionOf) into two
// workers, one of them killed with SIGKILL mid-stream and restarted. The
// sink group re-routes the misplaced events through TOPIC.routed: every
// event is stored once (by its own identity and by its source's), the
// derived drops are exactly those of the reference run over the source
// topic, and no worker ever holds a slice for another partition's events
// (bouncer_suppression_slice_foreign_holds_total stays 0); in the end each
// holds the slices of its two partitions only.
func TestRerouteKillNine(t *testing.T) {
	began := time.Now()
	inst := services(t, "fault-reroute")
	r := newRun(t, inst)
	r.extra = []string{"BOUNCER_CHANGELOG_TOPIC=" + r.topic + ".suppressions"}
	c := r.conn()
	produced := make(chan error, 1)
	go func() { produced <- r.produce(context.Background(), 8000) }()
	a := r.startWorker("a")
	b := r.startWorker("b")
	at := r.progressing(c, 0, 30000)
	foreign := func(label string) {
		t.Helper()
		if n := opsMetric(t, r, label, "bouncer_suppression_slice_foreign_holds_total"); n != 0 {
			t.Errorf("worker %s held %v slices for another partition's events", label, n)
		}
	}
	foreign("a")
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: worker a killed with %d rows stored; b takes over its partitions", time.Since(began).Round(time.Second), at)
	at = r.progressing(c, at, 20000)
	a = r.startWorker("a")
	t.Logf("%s: worker a restarted with %d rows stored", time.Since(began).Round(time.Second), at)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.check(c)
	t.Logf("%s: every event stored", time.Since(began).Round(time.Second))
	routedTopic := r.topic + ".routed"
	routed, err := r.count(c, "SELECT count() FROM DB.events WHERE derived = 0 AND kafka_topic = '"+routedTopic+"'")
	if err != nil || routed == 0 {
		t.Errorf("events stored from routed copies: %d (%v), want some", routed, err)
	}
	sources, err := r.count(c, "SELECT uniqExact(if(kafka_topic = '"+routedTopic+"', tuple('"+r.topic+"', source_partition, source_offset, msg_index), "+
		"tuple(kafka_topic, kafka_partition, kafka_offset, msg_index))) FROM DB.events WHERE derived = 0")
	if err != nil || sources != good {
		t.Errorf("distinct source identities of the stored events: %d (%v), want %d", sources, err, good)
	}
	t.Logf("%d of %d events stored from their routed copies", routed, good)
	r.checkDrops(t)
	t.Logf("%s: drops checked", time.Since(began).Round(time.Second))
	foreign("a")
	foreign("b")
	for _, w := range []string{"a", "b"} {
		waitMetric(t, r, w, "bouncer_suppression_slices_held", 2, 2*time.Minute)
		t.Logf("worker %s: copies sent %v, skipped as stored already %v", w,
			opsMetric(t, r, w, "bouncer_sink_routed_copies_total"), opsMetric(t, r, w, "bouncer_sink_routed_copies_skipped_total"))
	}
	stopGracefully(t, a)
	stopGracefully(t, b)
	t.Logf("%s in all", time.Since(began).Round(time.Second))
}
