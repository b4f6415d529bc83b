// Package progress tells the user how far a long command has got, in the
// form that fits where its output goes:
//
//   - a terminal gets a bar redrawn in place (schollz/progressbar), cleared
//     when the work is done;
//   - anything else (a file, a pipe, CI's log) gets a plain line every
//     Interval (default 5 s) and one line at the end, never a carriage
//     return or an escape sequence, so a log stays readable;
//   - quiet gets nothing.
//
// A rate is shown only once MinRateSpan has passed since the count was first
// known: a rate from a few milliseconds ("155,159,038 msg/s") is noise, not
// news. The rate is the average since that first count, so a Set-driven
// reporter that starts at 150,000 rows already stored does not claim them as
// its own speed.
//
// Lines are written only from Add, Set and Finish (no goroutine): a caller
// that stops updating stops the lines. A Reporter is safe for concurrent use.
package progress

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode says how progress is shown.
type Mode int

const (
	// Auto is Bar when the writer is a terminal, Lines otherwise.
	Auto Mode = iota
	// Bar redraws one line in place; for terminals only.
	Bar
	// Lines writes a plain line every Interval and one at Finish.
	Lines
	// Quiet writes nothing.
	Quiet
)

// MinRateSpan is how long a count must have been watched before a rate is
// shown.
const MinRateSpan = 2 * time.Second

// Config describes one piece of work.
type Config struct {
	// Label starts every line, e.g. "producing". Required.
	Label string
	// Unit names what is counted, e.g. "msg" or "rows". Default "items".
	Unit string
	// Total is the count at which the work is done; 0 or less when unknown.
	Total int64
	// Mode; default Auto.
	Mode Mode
	// Interval between plain lines in Lines mode. Default 5 s.
	Interval time.Duration
	// Now is the clock; default time.Now. Tests set it.
	Now func() time.Time
}

// Reporter shows the progress of one piece of work. Create it with New just
// before the work starts; call Add or Set as it goes and Finish at the end.
type Reporter struct {
	cfg  Config
	mode Mode
	w    io.Writer
	bar  *progressbar.ProgressBar

	start time.Time

	mu       sync.Mutex
	current  int64
	based    bool // the rate's starting point is known
	baseN    int64
	baseAt   time.Time
	lastLine time.Time
	finished bool
}

// IsTerminal reports whether w is a terminal (a file descriptor that
// golang.org/x/term says is one).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// ModeFor is the mode for w: Quiet when quiet, else Bar on a terminal and
// Lines elsewhere.
func ModeFor(w io.Writer, quiet bool) Mode {
	switch {
	case quiet:
		return Quiet
	case IsTerminal(w):
		return Bar
	default:
		return Lines
	}
}

// New starts reporting to w. For Add-driven work the rate counts from now
// and zero; for Set-driven work (counting something outside, such as rows
// in a table) it counts from the first Set.
func New(w io.Writer, cfg Config) *Reporter {
	if cfg.Unit == "" {
		cfg.Unit = "items"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mode := cfg.Mode
	if mode == Auto {
		mode = ModeFor(w, false)
	}
	now := cfg.Now()
	r := &Reporter{cfg: cfg, mode: mode, w: w, start: now, lastLine: now}
	if mode == Bar {
		total := cfg.Total
		if total <= 0 {
			total = -1 // a spinner
		}
		r.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(cfg.Label),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return r
}

// Add counts n more done.
func (r *Reporter) Add(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.based {
		r.based, r.baseN, r.baseAt = true, 0, r.start
	}
	r.current += n
	r.update()
}

// Set says how many are done in all (for counts read from elsewhere).
func (r *Reporter) Set(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.based {
		r.based, r.baseN, r.baseAt = true, n, r.cfg.Now()
	}
	r.current = n
	r.update()
}

// Finish ends the report: the bar is cleared, or a last line says how many
// were done, in how long ("done", or "stopped" short of a known total).
// Later calls do nothing.
func (r *Reporter) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.finished = true
	switch r.mode {
	case Bar:
		r.bar.Finish()
	case Lines:
		fmt.Fprintln(r.w, r.line(true))
	}
}

// update redraws the bar or writes a line when one is due; r.mu is held.
func (r *Reporter) update() {
	if r.finished {
		return
	}
	switch r.mode {
	case Bar:
		// The rate joins the label once known, refreshed each second;
		// the bar redraws at most every 200 ms.
		if now := r.cfg.Now(); now.Sub(r.lastLine) >= time.Second {
			if rate, ok := r.rate(); ok {
				r.lastLine = now
				r.bar.Describe(r.cfg.Label + ", " + formatRate(rate, r.cfg.Unit))
			}
		}
		r.bar.Set64(r.current)
	case Lines:
		if now := r.cfg.Now(); now.Sub(r.lastLine) >= r.cfg.Interval {
			r.lastLine = now
			fmt.Fprintln(r.w, r.line(false))
		}
	}
}

// rate is the average per second since the first count, once MinRateSpan
// has passed.
func (r *Reporter) rate() (float64, bool) {
	if !r.based {
		return 0, false
	}
	span := r.cfg.Now().Sub(r.baseAt)
	if span < MinRateSpan {
		return 0, false
	}
	return float64(r.current-r.baseN) / span.Seconds(), true
}

// line is one plain report: "producing: 40,000 of 200,000 msg (20%), 10s, 4,000 msg/s".
func (r *Reporter) line(final bool) string {
	var b strings.Builder
	b.WriteString(r.cfg.Label)
	switch {
	case final && r.cfg.Total > 0 && r.current < r.cfg.Total:
		b.WriteString(": stopped,")
	case final:
		b.WriteString(": done,")
	default:
		b.WriteString(":")
	}
	b.WriteString(" " + Count(r.current))
	if r.cfg.Total > 0 && !(final && r.current == r.cfg.Total) {
		b.WriteString(" of " + Count(r.cfg.Total))
	}
	b.WriteString(" " + r.cfg.Unit)
	if r.cfg.Total > 0 && !final {
		fmt.Fprintf(&b, " (%d%%)", min(100, r.current*100/r.cfg.Total))
	}
	if r.based {
		fmt.Fprintf(&b, ", %s", roundSpan(r.cfg.Now().Sub(r.baseAt)))
	}
	if rate, ok := r.rate(); ok {
		b.WriteString(", " + formatRate(rate, r.cfg.Unit))
	}
	return b.String()
}

// roundSpan rounds d for reading: whole seconds past 10 s, tenths below.
func roundSpan(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func formatRate(perSecond float64, unit string) string {
	return Count(int64(perSecond+0.5)) + " " + unit + "/s"
}

// Count formats n with thousands separators: 1234567 is "1,234,567".
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
