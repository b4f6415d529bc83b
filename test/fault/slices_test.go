//go:build fault

package fault

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// TestSlicesMoveWithWorkers is slicesMove on a single server.
func TestSlicesMoveWithWorkers(t *testing.T) {
	r := newRun(t, services(t, "fault-slices"))
	r.extra = []string{"BOUNCER_CHANGELOG_TOPIC=" + r.topic + ".suppressions"}
	c := r.conn()
	slicesMove(t, r, c, slicesStream{events: events, rate: 1500, step: 20000}, func() { r.check(c) })
}

// slicesStream is the stream of slicesMove.
type slicesStream struct {
	events int    // messages produced, one in badEvery bad
	rate   int    // messages produced per second
	step   uint64 // rows stored by worker a alone before worker b is added
}

// slicesMove: a stream produced in bouncer's partitioning (produce
// --partition-by recipient, the change log's; 4 partitions) while a worker
// is added and the first one removed: the suppression slices move with the
// partitions (the first worker drops the slices of the partitions it gave
// away; the last one holds every slice and never applies a change for a
// slice it does not hold), every event is stored once (check, the run's
// exactly-once counts), and the derived drops are exactly those of the
// reference run.
func slicesMove(t *testing.T, r *run, c driver.Conn, s slicesStream, check func()) {
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Second) }
	produced := make(chan error, 1)
	go func() {
		cmd := exec.Command(binary, "produce", "--quiet", "--count", fmt.Sprint(s.events), "--bad-every", fmt.Sprint(badEvery),
			"--rate", fmt.Sprint(s.rate), "--seed", "7", "--partitions", "4", "--partition-by", "recipient")
		cmd.Env = r.env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("produce: %v\n%s", err, out)
		}
		produced <- err
	}()
	a := r.startWorker("a")
	at := r.progressing(c, 0, s.step)
	waitMetric(t, r, "a", "bouncer_suppression_slices_held", 4, time.Minute)
	b := r.startWorker("b")
	t.Logf("%s: worker b added with %d rows stored (the stream takes about %d s)", since(), at, s.events/s.rate)
	// a gives two partitions to b and drops their slices 30 s later.
	waitMetric(t, r, "a", "bouncer_suppression_slices_held", 2, 3*time.Minute)
	waitMetric(t, r, "b", "bouncer_suppression_slices_held", 2, 3*time.Minute)
	stopGracefully(t, a)
	t.Logf("%s: worker a removed with %d rows stored; b takes its partitions and their slices", since(), r.stored(c))
	waitMetric(t, r, "b", "bouncer_suppression_slices_held", 4, 3*time.Minute)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: b holds every slice, the stream is produced, %d rows stored", since(), r.stored(c))
	check()
	t.Logf("%s: every event stored once", since())
	r.checkDrops(t)
	if n := opsMetric(t, r, "b", "bouncer_suppression_slice_unheld_total"); n != 0 {
		t.Errorf("worker b applied %v changes for slices it did not hold", n)
	}
	stopGracefully(t, b)
}

var opsAddrRE = regexp.MustCompile(`"msg":"ops server listening".*"addr":"([^"]+)"`)

// opsMetric reads an unlabelled metric from the ops port of the worker
// whose log is label.log (-1 when it cannot be read).
func opsMetric(t *testing.T, r *run, label, name string) float64 {
	t.Helper()
	logs, err := os.ReadFile(filepath.Join(r.logs, label+".log"))
	if err != nil {
		t.Fatal(err)
	}
	m := opsAddrRE.FindAllSubmatch(logs, -1)
	if m == nil {
		return -1
	}
	resp, err := http.Get("http://" + string(m[len(m)-1][1]) + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// waitMetric waits until the worker's metric is want.
func waitMetric(t *testing.T, r *run, label, name string, want float64, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var got float64
	for ctx.Err() == nil {
		if got = opsMetric(t, r, label, name); got == want {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("worker %s: %s is %v after %s, want %v; logs in %s", label, name, got, limit, want, r.logs)
}
