package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzMaxBytes keeps fuzz inputs under the limit-checking path cheap.
const fuzzMaxBytes = 64 << 10

func FuzzDecode(f *testing.F) {
	for _, glob := range []string{"testdata/good/*.json", "testdata/bad/*.json"} {
		for _, b := range loadCorpusF(f, glob) {
			f.Add(b)
		}
	}
	at := Coordinates{Topic: "events", Partition: 3, Offset: 1234}
	other := Coordinates{Topic: "events", Partition: 3, Offset: 1235}
	reused := &Decoder{MaxMessageBytes: fuzzMaxBytes}
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := string(msg)
		events, rejs := reused.Decode(msg, at, nil)
		if string(msg) != orig {
			t.Fatal("Decode modified its input")
		}

		// Same result twice, from a fresh Decoder and from the reused one.
		fresh := &Decoder{MaxMessageBytes: fuzzMaxBytes}
		events2, rejs2 := fresh.Decode(msg, at, nil)
		if !reflect.DeepEqual(events, events2) || !reflect.DeepEqual(rejs, rejs2) {
			t.Fatalf("two decodes differ:\n%+v %+v\n%+v %+v", events, summarize(rejs), events2, summarize(rejs2))
		}

		// Appending keeps what was there.
		prev := []Event{{Email: "keep@example.com"}}
		events3, _ := fresh.Decode(msg, at, prev)
		if len(events3) != len(events)+1 || events3[0].Email != "keep@example.com" {
			t.Fatalf("Decode did not append: %d events after 1 + %d", len(events3), len(events))
		}

		// Every element ends up in exactly one of events and rejections.
		if len(rejs) > 0 && rejs[0].Index == -1 {
			if len(rejs) != 1 || len(events) != 0 {
				t.Fatalf("message-level rejection with %d events and %d rejections", len(events), len(rejs))
			}
			if string(rejs[0].Raw) != orig {
				t.Fatal("message-level Raw is not the message")
			}
		} else {
			n := countElements(t, msg)
			idx := make([]int, n)
			for _, e := range events {
				idx[e.Index]++
			}
			for _, r := range rejs {
				if r.Index < 0 || r.Index >= n {
					t.Fatalf("rejection index %d out of [0,%d)", r.Index, n)
				}
				idx[r.Index]++
				if len(r.Raw) == 0 || r.Detail == "" {
					t.Fatalf("rejection without Raw or Detail: %+v", r)
				}
			}
			for i, c := range idx {
				if c != 1 {
					t.Fatalf("element %d appears %d times in events and rejections", i, c)
				}
			}
		}

		for _, r := range rejs {
			if !knownCode(r.Code) {
				t.Fatalf("unknown reject code %q", r.Code)
			}
		}
		for _, e := range events {
			checkEvent(t, e, at)
		}

		// Derived ids depend on the coordinates.
		events4, _ := fresh.Decode(msg, other, nil)
		for i, e := range events {
			if e.EventIDDerived && e.SGEventID == events4[i].SGEventID {
				t.Fatalf("derived id %s is the same at two offsets", e.SGEventID)
			}
		}

		checkAgainstOracle(t, "input", msg, &Decoder{MaxMessageBytes: fuzzMaxBytes})
	})
}

func checkEvent(t *testing.T, e Event, at Coordinates) {
	t.Helper()
	if e.Email == "" || e.EmailNorm == "" || e.Domain == "" {
		t.Fatalf("empty address fields: %+v", e)
	}
	if _, ok := eventType([]byte(e.Event)); !ok {
		t.Fatalf("unknown event type %q accepted", e.Event)
	}
	if norm, ok := NormalizeAddress(e.Email); !ok || norm != e.EmailNorm {
		t.Fatalf("EmailNorm %q is not NormalizeAddress(%q) = %q, %v", e.EmailNorm, e.Email, norm, ok)
	}
	if !strings.HasSuffix(e.EmailNorm, "@"+e.Domain) {
		t.Fatalf("Domain %q is not the end of %q", e.Domain, e.EmailNorm)
	}
	if e.Type != "" && e.Type != TypeBounce && e.Type != TypeBlocked {
		t.Fatalf("Type %q", e.Type)
	}
	if e.Event == EventBounce && e.Type == "" {
		t.Fatal("bounce without Type")
	}
	if e.AccountID == "" || e.SGEventID == "" {
		t.Fatalf("empty AccountID or SGEventID: %+v", e)
	}
	if e.EventIDDerived && e.SGEventID != DeriveEventID(at, e.Index) {
		t.Fatalf("derived id %s, want %s", e.SGEventID, DeriveEventID(at, e.Index))
	}
	if e.Topic != at.Topic || e.Partition != at.Partition || e.Offset != at.Offset {
		t.Fatalf("coordinates %s/%d/%d", e.Topic, e.Partition, e.Offset)
	}
	if e.Timestamp < 0 || e.Timestamp > 1<<32-1 {
		t.Fatalf("timestamp %d", e.Timestamp)
	}
	if e.Custom != "" && (!json.Valid([]byte(e.Custom)) || e.Custom[0] != '{') {
		t.Fatalf("Custom is not a JSON object: %s", e.Custom)
	}
	for _, s := range append([]string{e.Email, e.EmailNorm, e.Domain, e.SGEventID, e.SGMessageID, e.SMTPID,
		e.Reason, e.Status, e.Response, e.BounceClassification, e.IP, e.URL, e.UserAgent, e.FromEmail,
		e.Subject, e.Custom, e.AccountID}, e.Categories...) {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in an accepted event: %q", s)
		}
	}
}

func knownCode(c RejectCode) bool {
	for _, k := range RejectCodes() {
		if k == c {
			return true
		}
	}
	return false
}

// countElements counts a message's elements with encoding/json.
func countElements(t *testing.T, msg []byte) int {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoder judged elements of a message encoding/json rejects (%v)", err)
	}
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return 1
}

func loadCorpusF(f *testing.F, glob string) [][]byte {
	f.Helper()
	var out [][]byte
	files := mustGlob(f, glob)
	for _, name := range files {
		out = append(out, mustRead(f, name))
	}
	return out
}
