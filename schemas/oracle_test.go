package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The oracle judges a message without the Decoder: encoding/json for syntax,
// its own token walk for the envelope checks, and santhosh-tekuri/jsonschema
// with EventJSONSchema for the rest. The differential test and the fuzz
// target hold the Decoder to it.

var (
	schemaOnce           sync.Once
	msgSchema, evtSchema *jsonschema.Schema
	schemaErr            error
)

func compiledSchemas(t testing.TB) (msg, evt *jsonschema.Schema) {
	t.Helper()
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(EventJSONSchema))
		if err != nil {
			schemaErr = fmt.Errorf("parse schema: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("event.schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		if msgSchema, schemaErr = c.Compile("event.schema.json"); schemaErr != nil {
			return
		}
		evtSchema, schemaErr = c.Compile("event.schema.json#/$defs/event")
	})
	if schemaErr != nil {
		t.Fatalf("compile EventJSONSchema: %v", schemaErr)
	}
	return msgSchema, evtSchema
}

// verdict is the oracle's judgement of one message.
type verdict struct {
	msgOK     bool   // passes the message-level checks
	why       string // why not, or why an element fails
	elems     []bool // per element: envelope ok and valid against #/$defs/event
	elemWhy   []string
	schemaErr error // the whole message against the schema
}

func (v verdict) allOK() bool {
	if !v.msgOK || v.schemaErr != nil {
		return false
	}
	for _, ok := range v.elems {
		if !ok {
			return false
		}
	}
	return true
}

func judge(t testing.TB, msg []byte, maxBytes, maxDepth int) verdict {
	t.Helper()
	ms, es := compiledSchemas(t)
	var v verdict
	trimmed := bytes.Trim(msg, " \t\r\n")
	switch {
	case len(msg) > maxBytes:
		v.why = "oversize"
		return v
	case len(trimmed) == 0:
		v.why = "empty"
		return v
	case !json.Valid(msg):
		v.why = "invalid JSON"
		return v
	}
	if d, _, err := walk(msg); err != nil || d > messageDepthLimit {
		v.why = fmt.Sprintf("message depth %d (%v)", d, err)
		return v
	}
	var raws []json.RawMessage
	switch trimmed[0] {
	case '{':
		raws = []json.RawMessage{trimmed}
	case '[':
		if err := json.Unmarshal(msg, &raws); err != nil {
			t.Fatalf("oracle: split array: %v", err)
		}
		if len(raws) == 0 {
			v.why = "empty array"
			return v
		}
	default:
		v.why = "not an object or array"
		return v
	}
	v.msgOK = true
	for _, raw := range raws {
		ok, why := judgeElement(t, raw, maxDepth, es)
		v.elems = append(v.elems, ok)
		v.elemWhy = append(v.elemWhy, why)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("oracle: decode message: %v", err)
	}
	v.schemaErr = ms.Validate(inst)
	return v
}

func judgeElement(t testing.TB, raw []byte, maxDepth int, es *jsonschema.Schema) (bool, string) {
	t.Helper()
	if !utf8.Valid(raw) {
		return false, "non-UTF-8"
	}
	depth, dup, err := walk(raw)
	if err != nil {
		t.Fatalf("oracle: walk element: %v", err)
	}
	if dup != "" {
		return false, "duplicate key " + dup
	}
	if depth > maxDepth {
		return false, fmt.Sprintf("depth %d", depth)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("oracle: decode element: %v", err)
	}
	if err := es.Validate(inst); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// walk returns the nesting depth of a JSON value (containers only; a scalar
// is 0) and the first key repeated within one object, via encoding/json's
// tokens, which unescape keys as JSON defines.
func walk(raw []byte) (maxDepth int, dup string, err error) {
	type frame struct {
		obj       bool
		expectKey bool
		keys      map[string]bool
	}
	var st []*frame
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return maxDepth, dup, nil
		}
		if err != nil {
			return maxDepth, dup, err
		}
		var top *frame
		if len(st) > 0 {
			top = st[len(st)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			st = st[:len(st)-1]
			continue
		}
		if top != nil && top.obj {
			if top.expectKey {
				k := tok.(string)
				if top.keys[k] && dup == "" {
					dup = fmt.Sprintf("%q", k)
				}
				top.keys[k] = true
				top.expectKey = false
				continue
			}
			top.expectKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			st = append(st, &frame{obj: d == '{', expectKey: true, keys: map[string]bool{}})
			maxDepth = max(maxDepth, len(st))
		}
	}
}

// checkAgainstOracle decodes msg and fails t where the Decoder and the
// oracle disagree.
func checkAgainstOracle(t *testing.T, name string, msg []byte, d *Decoder) {
	t.Helper()
	maxBytes, maxDepth := d.MaxMessageBytes, d.MaxDepth
	if maxBytes == 0 {
		maxBytes = DefaultMaxMessageBytes
	}
	if maxDepth == 0 {
		maxDepth = DefaultMaxDepth
	}
	v := judge(t, msg, maxBytes, maxDepth)
	events, rejs := d.Decode(msg, Coordinates{Topic: "events", Partition: 1, Offset: 42}, nil)
	accepted := len(rejs) == 0

	if accepted != v.allOK() {
		t.Errorf("%s: decoder accepted all elements = %v, oracle (envelope ok && schema valid) = %v\n  oracle: msg %v %q elems %v %q schema: %v\n  decoder: %d events, rejections %+v",
			name, accepted, v.allOK(), v.msgOK, v.why, v.elems, v.elemWhy, v.schemaErr, len(events), summarize(rejs))
		return
	}
	wholeRejected := len(rejs) == 1 && rejs[0].Index == -1
	if wholeRejected != !v.msgOK {
		t.Errorf("%s: decoder rejected the whole message = %v, oracle message-level failure = %v (%s); rejections %+v",
			name, wholeRejected, !v.msgOK, v.why, summarize(rejs))
		return
	}
	if !v.msgOK {
		return
	}
	got := make([]bool, len(v.elems))
	for _, e := range events {
		if e.Index < 0 || e.Index >= len(got) {
			t.Fatalf("%s: event index %d out of range [0,%d)", name, e.Index, len(got))
		}
		got[e.Index] = true
	}
	for i := range got {
		if got[i] != v.elems[i] {
			t.Errorf("%s: element %d: decoder accepted = %v, oracle (per-event schema and envelope) = %v (%s); rejections %+v",
				name, i, got[i], v.elems[i], v.elemWhy[i], summarize(rejs))
		}
	}
}

func summarize(rejs []Rejection) []string {
	var out []string
	for _, r := range rejs {
		out = append(out, fmt.Sprintf("#%d %s: %s", r.Index, r.Code, r.Detail))
	}
	return out
}
