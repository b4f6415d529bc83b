package schemas

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var testAt = Coordinates{Topic: "sendgrid-events", Partition: 2, Offset: 77}

// ev builds one event object from the required fields plus extra members.
func ev(extra string) string {
	s := `{"email":"user@example.com","timestamp":1700000000,"event":"bounce"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func decodeOne(t *testing.T, msg string) Event {
	t.Helper()
	var d Decoder
	events, rejs := d.Decode([]byte(msg), testAt, nil)
	if len(rejs) != 0 || len(events) != 1 {
		t.Fatalf("want one event, got %d events and rejections %v", len(events), summarize(rejs))
	}
	return events[0]
}

func TestDecodeFields(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want func(e Event) any // what the field should read
		val  any
	}{
		{"event", ev(""), func(e Event) any { return e.Event }, EventBounce},
		{"event escaped", `{"email":"a@b.co","timestamp":1,"event":"\u006fpen"}`, func(e Event) any { return e.Event }, EventOpen},
		{"email kept as sent", `{"email":" John.Doe@Example.COM ","timestamp":1,"event":"open"}`,
			func(e Event) any { return [3]string{e.Email, e.EmailNorm, e.Domain} },
			[3]string{" John.Doe@Example.COM ", "john.doe@example.com", "example.com"}},
		// Only ASCII case folds: the Kelvin sign (U+212A) would fold to k and
		// make kim@ a different address's twin; other capitals stay.
		{"email Kelvin sign kept", `{"email":"\u212Aim@Example.com","timestamp":1,"event":"open"}`,
			func(e Event) any { return [2]string{e.EmailNorm, e.Domain} }, [2]string{"\u212Aim@example.com", "example.com"}},
		{"email non-ASCII capitals kept", `{"email":"ÄNN@BÜCHER.de","timestamp":1,"event":"open"}`,
			func(e Event) any { return e.EmailNorm }, "Änn@bÜcher.de"},
		{"email already normal shares", `{"email":"a@b.co","timestamp":1,"event":"open"}`,
			func(e Event) any { return [3]string{e.Email, e.EmailNorm, e.Domain} }, [3]string{"a@b.co", "a@b.co", "b.co"}},
		{"email last at", `{"email":"a@b@c.co","timestamp":1,"event":"open"}`,
			func(e Event) any { return []any{e.Domain, e.AddressValid} }, []any{"c.co", false}},
		{"address valid", ev(""), func(e Event) any { return e.AddressValid }, true},
		{"address double dot", `{"email":"a..b@example.com","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, false},
		{"address localhost", `{"email":"user@localhost","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, false},
		{"address underscore domain", `{"email":"user@exa_mple.com","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, false},
		{"address numeric tld", `{"email":"user@10.0.0.1","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, false},
		{"address hyphen label", `{"email":"user@-x.com","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, false},
		{"address plus tag", `{"email":"first.last+tag@sub.example.co.uk","timestamp":1,"event":"open"}`, func(e Event) any { return e.AddressValid }, true},
		{"timestamp", ev(""), func(e Event) any { return e.Timestamp }, int64(1700000000)},
		{"timestamp exponent", `{"email":"a@b.co","timestamp":1.7e9,"event":"open"}`, func(e Event) any { return e.Timestamp }, int64(1700000000)},
		{"timestamp zero fraction", `{"email":"a@b.co","timestamp":1700000000.000,"event":"open"}`, func(e Event) any { return e.Timestamp }, int64(1700000000)},
		{"sg_event_id", ev(`"sg_event_id":"abc=="`), func(e Event) any { return []any{e.SGEventID, e.EventIDDerived} }, []any{"abc==", false}},
		{"sg_event_id derived", ev(""), func(e Event) any { return []any{e.SGEventID, e.EventIDDerived} }, []any{DeriveEventID(testAt, 0), true}},
		{"sg_event_id empty derived", ev(`"sg_event_id":""`), func(e Event) any { return e.EventIDDerived }, true},
		{"sg_message_id", ev(`"sg_message_id":"m.filter1"`), func(e Event) any { return e.SGMessageID }, "m.filter1"},
		{"smtp-id", ev(`"smtp-id":"<x@y>"`), func(e Event) any { return e.SMTPID }, "<x@y>"},
		{"category string", ev(`"category":"cat facts"`), func(e Event) any { return e.Categories }, []string{"cat facts"}},
		{"category array", ev(`"category":["a","b"]`), func(e Event) any { return e.Categories }, []string{"a", "b"}},
		{"category empty array", ev(`"category":[]`), func(e Event) any { return e.Categories }, []string(nil)},
		{"reason", ev(`"reason":"550 5.1.1 no such user"`), func(e Event) any { return e.Reason }, "550 5.1.1 no such user"},
		{"status", ev(`"status":"5.1.1"`), func(e Event) any { return e.Status }, "5.1.1"},
		{"response", ev(`"response":"250 OK"`), func(e Event) any { return e.Response }, "250 OK"},
		{"attempt string", ev(`"attempt":"5"`), func(e Event) any { return e.Attempt }, uint32(5)},
		{"attempt number", ev(`"attempt":12`), func(e Event) any { return e.Attempt }, uint32(12)},
		{"type default bounce", ev(""), func(e Event) any { return e.Type }, TypeBounce},
		{"type blocked", ev(`"type":"blocked"`), func(e Event) any { return e.Type }, TypeBlocked},
		{"type absent on open", `{"email":"a@b.co","timestamp":1,"event":"open"}`, func(e Event) any { return e.Type }, ""},
		{"bounce_classification", ev(`"bounce_classification":"Invalid Address"`), func(e Event) any { return e.BounceClassification }, "Invalid Address"},
		{"ip", ev(`"ip":"192.0.2.1"`), func(e Event) any { return e.IP }, "192.0.2.1"},
		{"tls 1", ev(`"tls":1`), func(e Event) any { return e.TLS }, true},
		{"tls 0", ev(`"tls":0`), func(e Event) any { return e.TLS }, false},
		{"url", ev(`"url":"https://x.example/?a=1\u0026b=2"`), func(e Event) any { return e.URL }, "https://x.example/?a=1&b=2"},
		{"useragent", ev(`"useragent":"Mozilla/5.0"`), func(e Event) any { return e.UserAgent }, "Mozilla/5.0"},
		{"asm_group_id", ev(`"asm_group_id":42`), func(e Event) any { return e.ASMGroupID }, int64(42)},
		{"from_email", ev(`"from_email":"news@sender.example"`), func(e Event) any { return e.FromEmail }, "news@sender.example"},
		{"subject unicode", ev(`"subject":"caf\u00e9 \ud83d\ude00"`), func(e Event) any { return e.Subject }, "café 😀"},
		{"account_id", ev(`"account_id":"acme-prod_1.eu"`), func(e Event) any { return e.AccountID }, "acme-prod_1.eu"},
		{"account_id default", ev(""), func(e Event) any { return e.AccountID }, DefaultAccountID},
		{"custom none", ev(""), func(e Event) any { return e.Custom }, ""},
		{"custom compact in order", ev(`"z" : 1 , "sg_machine_open": false, "pool" : { "name" : "p", "id" : 2 },"u\u00e9":"\u00e9"`),
			func(e Event) any { return e.Custom }, `{"z":1,"sg_machine_open":false,"pool":{"name":"p","id":2},"u\u00e9":"\u00e9"}`},
		{"coordinates", `[` + ev("") + `,` + ev("") + `]`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				var d Decoder
				events, rejs := d.Decode([]byte(tt.msg), testAt, nil)
				if len(rejs) != 0 || len(events) != 2 {
					t.Fatalf("got %d events, %v", len(events), summarize(rejs))
				}
				for i, e := range events {
					if e.Topic != testAt.Topic || e.Partition != testAt.Partition || e.Offset != testAt.Offset || e.Index != i {
						t.Errorf("event %d coordinates %s/%d/%d/%d", i, e.Topic, e.Partition, e.Offset, e.Index)
					}
				}
				if events[0].SGEventID == events[1].SGEventID {
					t.Error("two elements got the same derived id")
				}
				return
			}
			e := decodeOne(t, tt.msg)
			if got := tt.want(e); !reflect.DeepEqual(got, tt.val) {
				t.Errorf("got %#v, want %#v", got, tt.val)
			}
		})
	}
}

func TestDecodeRejections(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		code   RejectCode
		index  int
		detail string // a substring of Detail
	}{
		{"oversize", ev(`"reason":"` + strings.Repeat("x", 2000) + `"`), CodeOversize, -1, "over the 1024-byte limit"},
		{"empty zero bytes", "", CodeEmpty, -1, "empty"},
		{"empty white space", " \r\n\t", CodeEmpty, -1, "empty"},
		{"invalid json trailing comma", `{"email":"a@b.co",}`, CodeInvalidJSON, -1, "want object key"},
		{"invalid json unterminated", `{"email":"a@b.co`, CodeInvalidJSON, -1, "unterminated string"},
		{"invalid json NaN", ev(`"x":NaN`), CodeInvalidJSON, -1, "invalid character"},
		{"invalid json tail", ev("") + "x", CodeInvalidJSON, -1, "after the top-level value"},
		{"invalid json in later element", `[` + ev("") + `,{"a":tru}]`, CodeInvalidJSON, -1, "invalid literal"},
		{"empty array", "[ ]", CodeEmptyArray, -1, "empty array"},
		{"too deep message", strings.Repeat("[", 300) + strings.Repeat("]", 300), CodeTooDeep, -1, "deeper than 256"},
		{"wrong type message", `"hello"`, CodeWrongType, -1, "want object or array of objects, got string"},
		{"non utf8", ev("\"subject\":\"caf\xe9\""), CodeNonUTF8, 0, "invalid UTF-8"},
		{"duplicate known key", ev(`"email":"b@c.co"`), CodeDuplicateKey, 0, `duplicate key "email"`},
		{"duplicate custom key", ev(`"x":1,"x":2`), CodeDuplicateKey, 0, `duplicate key "x"`},
		{"duplicate nested key", ev(`"x":{"a":1,"\u0061":2}`), CodeDuplicateKey, 0, `duplicate key "a"`},
		{"duplicate in big object", ev(`"x":{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"a3":3}`), CodeDuplicateKey, 0, `"a3"`},
		{"too deep element", ev(`"x":` + strings.Repeat("[", 32) + strings.Repeat("]", 32)), CodeTooDeep, 0, "deeper than 32"},
		{"wrong type timestamp", `{"email":"a@b.co","timestamp":"1700000000","event":"open"}`, CodeWrongType, 0, `field "timestamp": want integer unix seconds, got string`},
		{"wrong type email", `{"email":null,"timestamp":1,"event":"open"}`, CodeWrongType, 0, `field "email": want string, got null`},
		{"wrong type category", ev(`"category":{"a":1}`), CodeWrongType, 0, `field "category"`},
		{"wrong type category element", ev(`"category":["a",1]`), CodeWrongType, 0, "array holding number"},
		{"wrong type attempt", ev(`"attempt":true`), CodeWrongType, 0, `field "attempt"`},
		{"wrong type tls", ev(`"tls":"1"`), CodeWrongType, 0, `field "tls": want 0 or 1, got string`},
		{"wrong type asm_group_id", ev(`"asm_group_id":"7"`), CodeWrongType, 0, `field "asm_group_id"`},
		{"wrong type string field", ev(`"reason":550`), CodeWrongType, 0, `field "reason": want string, got number`},
		{"wrong type account_id", ev(`"account_id":7`), CodeWrongType, 0, `field "account_id"`},
		{"wrong type element", `[` + ev("") + `,7]`, CodeWrongType, 1, "element 1: want object, got number"},
		{"missing email", `{"timestamp":1,"event":"open"}`, CodeMissingField, 0, `"email"`},
		{"missing event", `{"email":"a@b.co","timestamp":1}`, CodeMissingField, 0, `"event"`},
		{"missing timestamp", `{"email":"a@b.co","event":"open"}`, CodeMissingField, 0, `"timestamp"`},
		{"unknown event", `{"email":"a@b.co","timestamp":1,"event":"blocked"}`, CodeUnknownEvent, 0, `unknown event type "blocked"`},
		{"invalid type", ev(`"type":"soft"`), CodeInvalidType, 0, `got "soft"`},
		{"invalid email no at", `{"email":"nobody","timestamp":1,"event":"open"}`, CodeInvalidEmail, 0, `"nobody" is not an email address`},
		{"invalid email inner space", `{"email":"a b@c.co","timestamp":1,"event":"open"}`, CodeInvalidEmail, 0, "not an email"},
		{"invalid email empty domain", `{"email":"a@ ","timestamp":1,"event":"open"}`, CodeInvalidEmail, 0, "not an email"},
		{"invalid email empty local", `{"email":" @c.co","timestamp":1,"event":"open"}`, CodeInvalidEmail, 0, "not an email"},
		{"invalid email DEL", `{"email":"a\u007f@c.co","timestamp":1,"event":"open"}`, CodeInvalidEmail, 0, "not an email"},
		{"invalid timestamp negative", `{"email":"a@b.co","timestamp":-5,"event":"open"}`, CodeInvalidTimestamp, 0, "got -5"},
		{"invalid timestamp fraction", `{"email":"a@b.co","timestamp":1.5,"event":"open"}`, CodeInvalidTimestamp, 0, "got 1.5"},
		{"invalid timestamp milliseconds", `{"email":"a@b.co","timestamp":1700000000000,"event":"open"}`, CodeInvalidTimestamp, 0, "0..4294967295"},
		{"future timestamp", `{"email":"a@b.co","timestamp":4102444800,"event":"bounce"}`, CodeFutureTimestamp, 0,
			"4102444800 (2100-01-01T00:00:00Z) is later than 2000000000 (2033-05-18T03:33:20Z)"},
		{"invalid account", ev(`"account_id":"a b"`), CodeInvalidAccount, 0, `got "a b"`},
		{"invalid account too long", ev(`"account_id":"` + strings.Repeat("a", 65) + `"`), CodeInvalidAccount, 0, "1 to 64"},
		{"invalid value attempt", ev(`"attempt":"1x"`), CodeInvalidValue, 0, `field "attempt"`},
		{"invalid value attempt too big", ev(`"attempt":"1234567890"`), CodeInvalidValue, 0, `field "attempt"`},
		{"invalid value tls", ev(`"tls":2`), CodeInvalidValue, 0, `field "tls": want 0 or 1, got 2`},
		{"invalid value asm_group_id", ev(`"asm_group_id":-1`), CodeInvalidValue, 0, `field "asm_group_id"`},
		{"first problem wins", `{"event":"nope","email":"x","timestamp":"y"}`, CodeUnknownEvent, 0, "nope"},
	}
	covered := map[RejectCode]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decoder{MaxMessageBytes: 1024, MaxTimestamp: 2000000000}
			events, rejs := d.Decode([]byte(tt.msg), testAt, nil)
			wantEvents := 0
			if tt.index > 0 {
				wantEvents = tt.index // earlier elements are good
			}
			if len(rejs) != 1 || len(events) != wantEvents {
				t.Fatalf("want %d events and one rejection, got %d events, %v", wantEvents, len(events), summarize(rejs))
			}
			r := rejs[0]
			if r.Code != tt.code || r.Index != tt.index || !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("got #%d %s %q; want #%d %s containing %q", r.Index, r.Code, r.Detail, tt.index, tt.code, tt.detail)
			}
			if len(r.Raw) == 0 && tt.msg != "" {
				t.Error("empty Raw")
			}
			if tt.index == -1 && string(r.Raw) != tt.msg {
				t.Error("message-level Raw is not the message")
			}
			covered[r.Code] = true
		})
	}
	for _, c := range RejectCodes() {
		if !covered[c] {
			t.Errorf("no case for %s", c)
		}
	}
}

func TestDecodeBatchKeepsGoodElements(t *testing.T) {
	msg := `[` + ev(`"sg_event_id":"a"`) + `, {"email":"b@c.co"} ,` + ev(`"sg_event_id":"c"`) + `]`
	var d Decoder
	prev := []Event{{Email: "earlier@example.com"}}
	events, rejs := d.Decode([]byte(msg), testAt, prev)
	if len(events) != 3 || events[0].Email != "earlier@example.com" {
		t.Fatalf("want the earlier event and 2 new, got %d", len(events))
	}
	if events[1].SGEventID != "a" || events[1].Index != 0 || events[2].SGEventID != "c" || events[2].Index != 2 {
		t.Errorf("good elements: %+v", events[1:])
	}
	if len(rejs) != 1 || rejs[0].Index != 1 || rejs[0].Code != CodeMissingField || string(rejs[0].Raw) != `{"email":"b@c.co"}` {
		t.Errorf("rejections: %+v", rejs)
	}
}

func TestDecoderReuseDoesNotAlias(t *testing.T) {
	var d Decoder
	a, _ := d.Decode([]byte(ev(`"reason":"first","category":["x"]`)), testAt, nil)
	msg := []byte(ev(`"reason":"second","category":["y"]`))
	b, _ := d.Decode(msg, testAt, nil)
	for i := range msg {
		msg[i] = 'z'
	}
	if a[0].Reason != "first" || a[0].Categories[0] != "x" || b[0].Reason != "second" || b[0].Categories[0] != "y" {
		t.Errorf("events share memory with the decoder or the input: %q %q %q %q", a[0].Reason, a[0].Categories, b[0].Reason, b[0].Categories)
	}
}

func TestDeriveEventID(t *testing.T) {
	at := Coordinates{Topic: "events", Partition: 0, Offset: 0}
	id := DeriveEventID(at, 0)
	// Pinned: other implementations of the scheme check against this value.
	if id != DeriveEventID(at, 0) || len(id) != 27 || !strings.HasPrefix(id, EventIDPrefix) {
		t.Fatalf("DeriveEventID = %q", id)
	}
	seen := map[string]bool{id: true}
	for _, c := range []struct {
		at  Coordinates
		idx int
	}{
		{Coordinates{"events", 0, 0}, 1}, {Coordinates{"events", 0, 1}, 0}, {Coordinates{"events", 1, 0}, 0},
		{Coordinates{"events2", 0, 0}, 0}, {Coordinates{"events", 10, 0}, 0}, {Coordinates{"events1", 0, 0}, 0},
	} {
		got := DeriveEventID(c.at, c.idx)
		if seen[got] {
			t.Errorf("%+v/%d: collision %s", c.at, c.idx, got)
		}
		seen[got] = true
	}
}

func TestJSONInt(t *testing.T) {
	tests := []struct {
		in             string
		v              int64
		integral, fits bool
	}{
		{"0", 0, true, true}, {"-0", 0, true, true}, {"-0.0e-5", 0, true, true},
		{"1700000000", 1700000000, true, true}, {"1.7e9", 1700000000, true, true},
		{"17000000000e-1", 1700000000, true, true}, {"1.5", 0, false, false},
		{"1e-1", 0, false, false}, {"100e-2", 1, true, true}, {"-42", -42, true, true},
		{"9223372036854775807", 1<<63 - 1, true, true}, {"9223372036854775808", 0, true, false},
		{"1e19", 0, true, false}, {"1e999999999999", 0, true, false}, {"1e-999999999999", 0, false, false},
		{"1.0000000000000000000001", 0, false, false},
	}
	for _, tt := range tests {
		v, integral, fits := jsonInt([]byte(tt.in))
		if v != tt.v || integral != tt.integral || fits != tt.fits {
			t.Errorf("jsonInt(%s) = %d %v %v, want %d %v %v", tt.in, v, integral, fits, tt.v, tt.integral, tt.fits)
		}
	}
}

// TestPlainRun checks the eight-bytes-at-a-time scan against the plain loop
// for every byte value at every position of a 20-byte window.
func TestPlainRun(t *testing.T) {
	naive := func(b []byte, i int) int {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		return i
	}
	buf := []byte(strings.Repeat("abcdefghij", 2))
	for pos := range buf {
		for c := range 256 {
			b := append([]byte(nil), buf...)
			b[pos] = byte(c)
			for start := 0; start <= pos; start++ {
				if got, want := plainRun(b, start), naive(b, start); got != want {
					t.Fatalf("byte %#x at %d, start %d: plainRun = %d, want %d", c, pos, start, got, want)
				}
			}
		}
	}
}

// NormalizeAddress is the decoder's EmailNorm, for addresses named outside
// events (the API, erasure): the same acceptance, the same form.
func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		" Kim@Example.COM\r\n":                    "kim@example.com",
		"\u212Aim@example.com":                    "\u212Aim@example.com",
		"x<script>alert(5)</script>@Evil.example": "x<script>alert(5)</script>@evil.example",
		"a//b@x.example":                          "a//b@x.example",
		"\ufffd@x.example":                        "\ufffd@x.example",
		"İ@x.example":                             "İ@x.example",
	} {
		got, ok := NormalizeAddress(in)
		if !ok || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, ok, want)
		}
		msg, _ := json.Marshal(map[string]any{"email": in, "timestamp": 1, "event": "open"})
		if e := decodeOne(t, string(msg)); e.EmailNorm != want {
			t.Errorf("%q: the decoder's EmailNorm is %q, NormalizeAddress's %q", in, e.EmailNorm, want)
		}
	}
	for _, in := range []string{"", "kim", "@x.org", "kim@", "a b@x.org", "a\x00@x.org", "a@x\u0085.org", "\xff@x.org", " @x.org"} {
		if got, ok := NormalizeAddress(in); ok {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}
