package enrich

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// languageKinds are the kinds of evidence a row of testdata/languages.tsv
// can be (see testdata/README.md): what a server sends (reply, dsn), a
// string from a mail system's localisation (localisation), a phrase a
// bounce handler collected from real bounces (phrase), or a provider's own
// translation of its reply in its documentation (doc).
var languageKinds = map[string]bool{"reply": true, "dsn": true, "localisation": true, "phrase": true, "doc": true}

// heldoutFloor is the number of rows of testdata/languages-heldout.tsv
// classified as labelled. Those rows were collected after the rules for
// other languages were written, and no rule was written from them: they
// measure how the rules carry over to texts they were not made from.
const heldoutFloor = 14

// heldout2Floor is the number of rows of testdata/languages-heldout2.tsv
// classified as labelled. Those rows were collected after the rules by
// meaning (the intl.* rules) were written, and no rule was written from
// them.
const heldout2Floor = 23

// languageFloor is the number of rows of testdata/languages.tsv that must
// be classified as labelled. Rows are committed before the rules written
// for them, so for one commit it is below the row count (that commit's
// agreement is the "before" figure of docs/classification.md).
const languageFloor = 123

// TestLanguageCorpus checks testdata/languages.tsv (bounce texts in other
// languages than English, each citing its source, collected before the
// rules for them were written) and reports agreement per language and per
// kind of evidence; at least languageFloor rows must be classified as
// labelled. Run with -v
// for the table. testdata/languages-heldout.tsv is reported the same way
// and only held to a floor.
func TestLanguageCorpus(t *testing.T) {
	c := MustNew()
	agree, total, report := languageAgreement(t, c, "testdata/languages.tsv")
	t.Log("\n" + report)
	if agree < languageFloor {
		t.Errorf("%d/%d language rows classified as labelled, below the floor of %d", agree, total, languageFloor)
	}
	agree, total, report = languageAgreement(t, c, "testdata/languages-heldout.tsv")
	t.Log("\nheld out: " + report)
	if agree < heldoutFloor {
		t.Errorf("%d/%d held-out language rows classified as labelled, below the floor of %d", agree, total, heldoutFloor)
	}
	agree, total, report = languageAgreement(t, c, "testdata/languages-heldout2.tsv")
	t.Log("\nheld out, second set: " + report)
	if agree < heldout2Floor {
		t.Errorf("%d/%d rows of the second held-out set classified as labelled, below the floor of %d", agree, total, heldout2Floor)
	}
}

func languageAgreement(t *testing.T, c *Classifier, path string) (agree, total int, report string) {
	t.Helper()
	rows := readTSV(t, path)
	type tally struct{ n, ok int }
	byLang, byKind := map[string]*tally{}, map[string]*tally{}
	add := func(m map[string]*tally, k string, ok bool) {
		if m[k] == nil {
			m[k] = &tally{}
		}
		m[k].n++
		if ok {
			m[k].ok++
		}
	}
	seen := map[string]bool{}
	var misses []string
	for _, row := range rows {
		name := row["name"]
		if seen[name] {
			t.Errorf("%s: duplicate name", name)
		}
		seen[name] = true
		if !languageKinds[row["kind"]] || row["source"] == "" || row["lang"] == "" || row["text"] == "" {
			t.Errorf("%s: kind %q, lang %q, source %q: every row needs a known kind, a language, a source and a text", name, row["kind"], row["lang"], row["source"])
		}
		info, ok := LookupReason(Reason(row["reason_code"]))
		if !ok || string(info.Class) != row["classification"] {
			t.Errorf("%s: reason %q and classification %q do not match the taxonomy", name, row["reason_code"], row["classification"])
		}
		res, err := c.Classify(Input{Event: row["event"], Type: row["type"], Reason: row["text"], Status: row["status"], Email: row["email"]})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		hit := string(res.BounceType) == row["bounce_type"] && string(res.Classification) == row["classification"] && string(res.Reason) == row["reason_code"]
		if hit {
			agree++
		} else {
			misses = append(misses, fmt.Sprintf("%-48s want %s/%s got %s/%s by %s", name, row["bounce_type"], row["reason_code"], res.BounceType, res.Reason, res.Rule))
		}
		add(byLang, row["lang"], hit)
		add(byKind, row["kind"], hit)
	}
	var b strings.Builder
	table := func(title string, m map[string]*tally) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "%s:", title)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s %d/%d", k, m[k].ok, m[k].n)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s: %d/%d rows classified as labelled\n", path, agree, len(rows))
	table("by language", byLang)
	table("by kind", byKind)
	for _, m := range misses {
		b.WriteString("  miss " + m + "\n")
	}
	return agree, len(rows), b.String()
}
