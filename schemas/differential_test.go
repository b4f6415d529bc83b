package schemas

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// diffMaxBytes is the message limit of the differential test, small enough
// for an oversize file in testdata/bad.
const diffMaxBytes = 16 << 10

// TestDifferential holds the Decoder to the oracle over the good, bad and fuzz
// corpora: a message is wholly accepted iff it passes the envelope checks and
// validates against EventJSONSchema, and each element of a batch is accepted
// iff it passes them and validates against "#/$defs/event".
func TestDifferential(t *testing.T) {
	corpus := loadCorpus(t, "testdata/good/*.json", "testdata/bad/*.json")
	fuzz := loadFuzzCorpus(t, "testdata/fuzz/FuzzDecode/*")
	if len(fuzz) == 0 {
		t.Fatal("no fuzz corpus in testdata/fuzz/FuzzDecode")
	}
	for k, v := range fuzz {
		corpus[k] = v
	}
	for _, name := range sortedKeys(corpus) {
		d := &Decoder{MaxMessageBytes: diffMaxBytes}
		checkAgainstOracle(t, name, corpus[name], d)
	}
}

// TestDifferentialCanFail proves the oracle comparison is not vacuous: a
// Decoder with a looser limit than the oracle's must be caught.
func TestDifferentialCanFail(t *testing.T) {
	msg, err := os.ReadFile("testdata/bad/too_deep__custom.json")
	if err != nil {
		t.Fatal(err)
	}
	v := judge(t, msg, diffMaxBytes, DefaultMaxDepth)
	d := &Decoder{MaxMessageBytes: diffMaxBytes, MaxDepth: 64}
	_, rejs := d.Decode(msg, Coordinates{}, nil)
	if (len(rejs) == 0) == v.allOK() {
		t.Fatalf("a decoder allowing depth 64 agreed with an oracle allowing %d", DefaultMaxDepth)
	}
}

func loadCorpus(t *testing.T, globs ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, g := range globs {
		files, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no files match %s", g)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[f] = b
		}
	}
	return out
}

// loadFuzzCorpus reads Go fuzz corpus files ("go test fuzz v1" followed by
// one []byte(...) line).
func loadFuzzCorpus(t *testing.T, glob string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", f)
		}
		lit, ok := strings.CutPrefix(lines[1], "[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		if !ok || !ok2 {
			t.Fatalf("%s: want one []byte value", f)
		}
		s, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = []byte(s)
	}
	return out
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// TestCorpusCodes checks every bad file yields exactly one rejection, with the
// code its name starts with, and every good file none.
func TestCorpusCodes(t *testing.T) {
	for name, msg := range loadCorpus(t, "testdata/good/*.json") {
		d := &Decoder{MaxMessageBytes: diffMaxBytes}
		events, rejs := d.Decode(msg, Coordinates{Topic: "t"}, nil)
		if len(rejs) != 0 || len(events) == 0 {
			t.Errorf("%s: %d events, rejections %v", name, len(events), summarize(rejs))
		}
	}
	seen := map[RejectCode]bool{}
	for name, msg := range loadCorpus(t, "testdata/bad/*.json") {
		want, _, _ := strings.Cut(filepath.Base(name), "__")
		d := &Decoder{MaxMessageBytes: diffMaxBytes}
		_, rejs := d.Decode(msg, Coordinates{Topic: "t"}, nil)
		if len(rejs) != 1 || string(rejs[0].Code) != want {
			t.Errorf("%s: want one %s rejection, got %v", name, want, summarize(rejs))
			continue
		}
		seen[rejs[0].Code] = true
		if rejs[0].Index == -1 && !bytes.Equal(rejs[0].Raw, msg) {
			t.Errorf("%s: message-level Raw is not the message", name)
		}
	}
	for _, c := range RejectCodes() {
		// future_timestamp depends on Decoder.MaxTimestamp, not on the
		// bytes alone (TestDecodeRejections covers it).
		if !seen[c] && c != CodeFutureTimestamp {
			t.Errorf("no file in testdata/bad exercises %s", c)
		}
	}
}

func mustGlob(t testing.TB, glob string) []string {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("glob %s: %v (%d files)", glob, err, len(files))
	}
	return files
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
