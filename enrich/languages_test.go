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

// languageFloor is the number of rows of testdata/languages.tsv classified
// as labelled. It only rises: a rule change that loses rows fails here.
const languageFloor = 22

// TestLanguageCorpus checks testdata/languages.tsv (bounce texts in other
// languages than English, each citing its source) and reports agreement per
// language and per kind of evidence. Run with -v for the table.
func TestLanguageCorpus(t *testing.T) {
	c := MustNew()
	rows := readTSV(t, "testdata/languages.tsv")
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
	agree := 0
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
	report := func(title string, m map[string]*tally) {
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
	fmt.Fprintf(&b, "languages corpus: %d/%d rows classified as labelled\n", agree, len(rows))
	report("by language", byLang)
	report("by kind", byKind)
	for _, m := range misses {
		b.WriteString("  miss " + m + "\n")
	}
	t.Log("\n" + b.String())
	if agree < languageFloor {
		t.Errorf("%d/%d language rows classified as labelled, below the floor of %d", agree, len(rows), languageFloor)
	}
}
