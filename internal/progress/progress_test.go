package progress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// clock is a fake time source the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestLinesEveryIntervalAndAtFinish(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	r := New(&out, Config{Label: "producing", Unit: "msg", Total: 200_000, Mode: Lines, Now: c.now})
	// The first chunk comes a millisecond after the start: no line yet,
	// and above all no rate made from a millisecond.
	c.advance(time.Millisecond)
	r.Add(1000)
	if out.Len() != 0 {
		t.Fatalf("a line before the interval passed: %q", out.String())
	}
	for range 99 { // 100,000 in 5 s
		c.advance(50 * time.Millisecond)
		r.Add(1000)
	}
	c.advance(49 * time.Millisecond)
	r.Add(0)
	for range 100 { // the other 100,000 in the next 5 s
		c.advance(50 * time.Millisecond)
		r.Add(1000)
	}
	r.Finish()
	r.Finish() // a second Finish writes nothing
	got := lines(out.String())
	want := []string{
		"producing: 100,000 of 200,000 msg (50%), 5s, 20,000 msg/s",
		"producing: 200,000 of 200,000 msg (100%), 10s, 20,000 msg/s",
		"producing: done, 200,000 msg, 10s, 20,000 msg/s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Errorf("plain lines hold a carriage return or an escape: %q", out.String())
	}
}

func TestNoRateBeforeMinRateSpan(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	r := New(&out, Config{Label: "stored", Unit: "rows", Total: 10, Mode: Lines, Interval: time.Second, Now: c.now})
	c.advance(time.Second)
	r.Add(5)
	c.advance(MinRateSpan - time.Second - time.Millisecond)
	r.Finish()
	for _, l := range lines(out.String()) {
		if strings.Contains(l, "/s") {
			t.Errorf("a rate after less than %v: %q", MinRateSpan, l)
		}
	}
	if got := lines(out.String()); len(got) != 2 || got[0] != "stored: 5 of 10 rows (50%), 1s" || got[1] != "stored: stopped, 5 of 10 rows, 2s" {
		t.Errorf("lines %q", got)
	}
}

// A count read from outside (rows already in a table when the wait starts)
// is the starting point of the rate, not work done in no time.
func TestSetCountsRateFromFirstValue(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	r := New(&out, Config{Label: "stored in clickhouse", Unit: "rows", Total: 200_000, Mode: Lines, Now: c.now})
	c.advance(250 * time.Millisecond)
	r.Set(150_000)
	c.advance(5 * time.Second)
	r.Set(200_000)
	r.Finish()
	want := "stored in clickhouse: 200,000 of 200,000 rows (100%), 5s, 10,000 rows/s\n" +
		"stored in clickhouse: done, 200,000 rows, 5s, 10,000 rows/s\n"
	if out.String() != want {
		t.Errorf("got\n%swant\n%s", out.String(), want)
	}
}

func TestUnknownTotal(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	r := New(&out, Config{Label: "producing", Unit: "msg", Mode: Lines, Now: c.now})
	c.advance(6 * time.Second)
	r.Add(1_234_567)
	r.Finish()
	want := "producing: 1,234,567 msg, 6s, 205,761 msg/s\nproducing: done, 1,234,567 msg, 6s, 205,761 msg/s\n"
	if out.String() != want {
		t.Errorf("got\n%swant\n%s", out.String(), want)
	}
}

func TestQuietWritesNothing(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	r := New(&out, Config{Label: "producing", Total: 10, Mode: ModeFor(&out, true), Now: c.now})
	c.advance(time.Minute)
	r.Add(10)
	r.Finish()
	if out.Len() != 0 {
		t.Errorf("quiet wrote %q", out.String())
	}
}

// Auto picks lines for anything that is not a terminal (a pipe, a file, a
// buffer) and the bar for a terminal.
func TestAutoFollowsTheWriter(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, w := range map[string]io.Writer{"pipe": pw, "file": file, "buffer": &bytes.Buffer{}} {
		if m := ModeFor(w, false); m != Lines {
			t.Errorf("%s: mode %d, want Lines", name, m)
		}
	}

	ptmx, tty := openPTY(t)
	if !IsTerminal(tty) {
		t.Fatal("a pseudo-terminal is not a terminal")
	}
	got := make(chan string)
	go func() { b, _ := io.ReadAll(ptmx); got <- string(b) }()
	c := newClock()
	r := New(tty, Config{Label: "producing", Unit: "msg", Total: 100, Now: c.now})
	if r.mode != Bar {
		t.Fatalf("mode %d on a terminal, want Bar", r.mode)
	}
	c.advance(time.Millisecond)
	r.Add(10)
	c.advance(3 * time.Second)
	time.Sleep(250 * time.Millisecond) // past the bar's own redraw throttle (real time)
	r.Add(50)
	r.Finish()
	tty.Close()
	drawn := <-got
	if !strings.Contains(drawn, "\r") || !strings.Contains(drawn, "producing") {
		t.Errorf("no bar drawn on the terminal: %q", drawn)
	}
	if !strings.Contains(drawn, "producing, 20 msg/s") {
		t.Errorf("the bar does not show the rate after %v: %q", MinRateSpan, drawn)
	}
	var frames []string
	for _, f := range strings.Split(drawn, "\r") {
		if strings.TrimSpace(f) != "" {
			frames = append(frames, f)
		}
	}
	if len(frames) == 0 || strings.Contains(frames[0], "/s") {
		t.Errorf("the first frame shows a rate: %q", frames)
	}
}

// openPTY opens a pseudo-terminal pair: the controlling side, read by the
// test, and the terminal a program writes to.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 155159038: "155,159,038", -1234: "-1,234"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}
