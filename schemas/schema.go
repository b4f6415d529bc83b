package schemas

import _ "embed"

// EventJSONSchema is the JSON Schema (draft 2020-12) of one message:
// an event object or a non-empty array of them. Its "#/$defs/event" is one
// event. The Decoder accepts exactly the messages that pass the envelope
// checks (see the package doc) and validate against this schema; a test
// holds the two to that. Do not modify the slice.
//
//go:embed event.schema.json
var EventJSONSchema []byte
