package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/bouncer-mail/bouncer/reclassify"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

func init() {
	register("reclassify", "re-run the current rules over stored bounces: a dry-run diff, then (--apply) store it and correct the lists", runReclassify)
}

func runReclassify(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "reclassify")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	kf := addKafkaFlags(e)
	rulesFile := fs.String("rules", env.getenv("BOUNCER_RULES"), "operator rules `file`, tried before the built-in rules (env BOUNCER_RULES)")
	since := fs.String("since", "", "from this time, YYYY-MM-DD or RFC 3339 (UTC); required")
	until := fs.String("until", "", "until this time, exclusive, YYYY-MM-DD or RFC 3339; default now")
	acct := fs.String("account", "", "only this account (default every account)")
	apply := fs.Bool("apply", false, "store the new classifications and correct the lists without asking (for scripts); without it: a dry run, then a question when stdin is a terminal")
	chunk := fs.Int("chunk", 1000, "most changed events stored by one step (one ALTER TABLE events UPDATE)")
	examples := fs.Int("examples", 1, "example texts shown per line of the diff (0 to 3)")
	asJSON := fs.Bool("json", false, "print the diff as JSON")
	wait := fs.Duration("wait", clickhouse.ReclassifyWait, "longest wait for each step's update of the events table (its stats days are read from the events table for twice this long)")
	changeTopic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "compacted topic the workers' suppression index follows; list changes are published there")
	publish := fs.Bool("publish-changes", true, "publish the list changes on the change-log topic (needs Kafka); without it workers' indexes and mirroring senders do not hear of them")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("reclassify takes no arguments; got %q", fs.Args())
	}
	if *since == "" {
		return usagef("reclassify: --since is required (YYYY-MM-DD or RFC 3339): the start of the stored bounces to re-classify")
	}
	w, err := parseWindow(*since, *until, time.Now())
	if err != nil {
		return err
	}
	if *acct != "" && !schemas.ValidAccountID(*acct) {
		return usagef("reclassify: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", *acct)
	}
	if *chunk < 1 || *chunk > 100_000 {
		return usagef("reclassify: --chunk %d: want 1 to 100000", *chunk)
	}
	if *examples < 0 || *examples > 3 {
		return usagef("reclassify: --examples %d: want 0 to 3", *examples)
	}
	if *wait <= 0 {
		return usagef("reclassify: --wait %v: want a positive duration", *wait)
	}
	clickhouse.ReclassifyWait = *wait
	classifier, err := loadClassifier(*rulesFile)
	if err != nil {
		return err
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if chCfg.Cluster != "" && *chunk > 5000 {
		return usagef("reclassify: --chunk %d on a cluster: want at most 5000 (each update's text goes through ZooKeeper, whose nodes hold 1 MB by default)", *chunk)
	}
	store, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	defer store.Close()
	win := reclassify.Window{Account: *acct, Since: w.since, Until: w.until}
	cfg := reclassify.Config{Classifier: classifier, Store: store, Lists: suppression.Writer{Store: store}, Chunk: *chunk}
	progress := func(p reclassify.Progress) {
		if p.Applying {
			fmt.Fprintf(env.stderr, "  %s: %d events stored with their new classification, %d list changes (%s)\n",
				p.Day.Format(time.DateOnly), p.Changed, p.ListChanges, p.Elapsed.Round(time.Second))
			return
		}
		fmt.Fprintf(env.stderr, "[%d/%d] %s read: %d bounces so far (%s)\n", p.DaysDone, p.Days, p.Day.Format(time.DateOnly), p.Read, p.Elapsed.Round(time.Second))
	}
	cfg.Progress = progress

	if !*apply {
		rep, err := reclassify.Run(ctx, cfg, win, false)
		if err != nil {
			return err
		}
		if err := printDiff(env.stdout, rep, w, *examples, *asJSON); err != nil {
			return err
		}
		if rep.Changed+rep.RuleOnly == 0 {
			return nil
		}
		if !stdinIsTerminal(env.stdin) {
			_, err := fmt.Fprintln(env.stdout, "Dry run: nothing was changed. Run again with --apply to store it and correct the lists.")
			return err
		}
		fmt.Fprint(env.stdout, "Store these classifications and correct the lists? [y/N] ")
		answer, _ := bufio.NewReader(env.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			_, err := fmt.Fprintln(env.stdout, "Nothing was changed.")
			return err
		}
	}
	changes, closeChanges, err := openChangeLog(ctx, kf, *changeTopic, *publish)
	if err != nil {
		return err
	}
	defer closeChanges()
	cfg.Lists.Changes = changes
	start := time.Now()
	rep, err := reclassify.Run(ctx, cfg, win, true)
	if err != nil {
		return fmt.Errorf("%w (what was stored stays; run the same command again to finish: it picks up what still differs)", err)
	}
	if *apply {
		if err := printDiff(env.stdout, rep, w, *examples, *asJSON); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(env.stdout, "Applied: %d events re-classified (%d of them only their rule id or decided_by), %d list changes written and published, in %s.\n",
		rep.Changed+rep.RuleOnly, rep.RuleOnly, rep.ListChanges, time.Since(start).Round(time.Millisecond))
	return err
}

func stdinIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// printDiff prints a run's report: counts per old -> new classification,
// reason and bounce type, with example texts, and the list moves.
func printDiff(out io.Writer, rep reclassify.Report, w window, examples int, asJSON bool) error {
	if asJSON {
		b, _ := json.MarshalIndent(struct {
			Since    time.Time            `json:"since"`
			Until    time.Time            `json:"until"`
			Read     uint64               `json:"read"`
			Changed  uint64               `json:"changed"`
			RuleOnly uint64               `json:"rule_only"`
			Rows     []reclassify.DiffRow `json:"diff"`
			Moves    map[string]uint64    `json:"list_moves"`
			Applied  bool                 `json:"applied"`
			Lists    uint64               `json:"list_changes"`
		}{w.since, w.until, rep.Read, rep.Changed, rep.RuleOnly, rep.Rows, rep.Moves, rep.Applied, rep.ListChanges}, "", "  ")
		_, err := fmt.Fprintf(out, "%s\n", b)
		return err
	}
	fmt.Fprintf(out, "%s to %s: %d stored bounces, %d change classification, reason or type; %d change only their rule id or decided_by\n",
		w.since.Format(time.RFC3339), w.until.Format(time.RFC3339), rep.Read, rep.Changed, rep.RuleOnly)
	if len(rep.Rows) > 0 {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\tCOUNT\tOLD (classification / reason / type)\t\tNEW\tRULE")
		for i, r := range rep.Rows {
			fmt.Fprintf(tw, "%d.\t%d\t%s / %s / %s\t->\t%s / %s / %s\t%s\n", i+1, r.Count,
				r.Old.Classification, r.Old.ReasonCode, r.Old.BounceType, r.New.Classification, r.New.ReasonCode, r.New.BounceType, r.New.Rule)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if examples > 0 {
			fmt.Fprintln(out, "examples:")
			for i, r := range rep.Rows {
				for k, ex := range r.Examples {
					if k < examples {
						fmt.Fprintf(out, "%3d. %s\n", i+1, clip(ex, 200))
					}
				}
			}
		}
	}
	if len(rep.Moves) > 0 {
		var moves []string
		for m, n := range rep.Moves {
			moves = append(moves, fmt.Sprintf("%s: %d", m, n))
		}
		sort.Strings(moves)
		fmt.Fprintf(out, "events whose list changes (before -> after; the entries change unless a later change or another bounce decides): %s\n", strings.Join(moves, ", "))
	}
	return nil
}
