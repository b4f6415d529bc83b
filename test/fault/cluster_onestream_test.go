//go:build fault

package fault

import (
	"context"
	"testing"
)

// oneStream is the "done means" as one stream: two workers; a
// replica, a broker and a worker killed with SIGKILL along the way (each
// brought back before the next fault); every good event stored once and
// every bad one once in dead_letters.
func (ci *clusterInstance) oneStream(t *testing.T) {
	r := newClusterRun(t, ci, "onestream")
	c := r.conn()
	produced := make(chan error, 1)
	go func() { produced <- r.produce(context.Background(), 5000) }()
	a := r.startWorker("a")
	r.startWorker("b")
	// Both members in one generation before the replica dies: a rebalance
	// while it is down waits for it (the resume points need every replica).
	r.waitOneGeneration("a", "b")
	at := r.progressing(c, 0, 6000)
	node(t, ci.name, "stop-clickhouse-2-2", "--kill")
	t.Logf("replica 2-2 killed with %d rows stored", at)
	at = r.progressing(c, at, 6000)
	node(t, ci.name, "start-clickhouse-2-2")
	ci.kafkaInSync(t) // one broker down must leave two in-sync replicas
	node(t, ci.name, "stop-kafka-3", "--kill")
	t.Logf("replica 2-2 back, kafka broker 3 killed with %d rows stored", at)
	at = r.progressing(c, at, 6000)
	node(t, ci.name, "start-kafka-3")
	ci.kafkaInSync(t)
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker 3 back, worker a killed with %d rows stored", at)
	at = r.progressing(c, at, 6000)
	r.startWorker("a2")
	t.Logf("worker a2 started with %d rows stored", at)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.check(c)
}
