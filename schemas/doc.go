// Package schemas owns bouncer's event contract: the Go type of a SendGrid
// delivery event, the Decoder that turns Kafka messages into events, and the
// JSON Schema (EventJSONSchema) that documents the same contract for
// producers. (The embedded ClickHouse DDL lives in schemas/ddl.)
//
// # Input
//
// A Kafka message holds one SendGrid Event Webhook event object, or a JSON
// array of them (SendGrid's batch form). Known keys: event, email, timestamp,
// sg_event_id, sg_message_id, smtp-id, category, reason, status, response,
// attempt, type, bounce_classification, ip, tls, url, useragent,
// asm_group_id, from_email, subject and account_id; Event documents each.
// Every other key is a custom argument and is kept, compacted, in
// Event.Custom. event, email and timestamp are required.
//
// # Guarantees
//
//   - Every element of a message ends up exactly once in the returned events
//     or the returned rejections; each element of an array is judged on its
//     own. A message that is bad as a whole (oversize, empty, not JSON, an
//     empty array, not an object or array, nesting beyond 256) yields one
//     Rejection with Index -1 and no event.
//   - Decode accepts an element if and only if it passes the envelope checks
//     below and validates against the schema's "#/$defs/event"; a
//     differential test over the good, bad and fuzz corpora holds the Decoder
//     and EventJSONSchema to this.
//   - Decoding is deterministic: the same bytes at the same coordinates give
//     the same events, including the derived sg_event_id (DeriveEventID), so
//     every consumer group and every redelivery agree.
//   - Accepted events have a known Event, a non-empty Email that is an
//     address at all, valid UTF-8 strings and an EmailNorm with ASCII
//     capitals lower-cased and no other character changed (NormalizeAddress:
//     the one comparison form of the pipeline, the index, the API and
//     erasure).
//     Plausible but invalid addresses (a..b@example.com, user@localhost) are
//     accepted with AddressValid false, so a later stage can list them as
//     invalid emails.
//   - Rejections carry a stable RejectCode, a Detail naming the field and a
//     copy of the element's (or message's) bytes for the dead-letter topic.
//   - Decode never panics on any input, and keeps no reference to it.
//
// # Envelope checks
//
// JSON Schema cannot say these, so the schema's description lists them and
// the Decoder applies them before (and beside) the schema rules:
//
//   - size: at most Decoder.MaxMessageBytes (default 1 MiB), else oversize;
//     0 bytes or only JSON white space is empty;
//   - syntax: exactly one strict RFC 8259 value (no NaN, comments, trailing
//     commas, leading zeros, control characters in strings or unknown
//     escapes), else invalid_json;
//   - UTF-8: every string and key of the element is valid UTF-8, else
//     non_utf8 (lone \u surrogate escapes decode to U+FFFD, as in
//     encoding/json);
//   - keys: no object at any depth repeats a key, compared after unescaping,
//     else duplicate_key;
//   - depth: an event nests at most Decoder.MaxDepth (default 32) arrays and
//     objects, the event object being 1, else too_deep; a message nesting
//     beyond 256 is rejected whole.
//
// When an element has several problems, the first found in input order is
// reported (missing fields are found at the end of the object).
//
// # Number and string rules
//
// timestamp, tls, asm_group_id and a numeric attempt must be integers in the
// JSON Schema sense: 1513299569.0 and 1.513299569e9 are integers, compared
// exactly, never through float64. A known field of the wrong JSON type
// (null included) is wrong_type; a value of the right type out of range is
// invalid_timestamp, invalid_value, invalid_type, invalid_email,
// invalid_account or unknown_event. A timestamp later than
// Decoder.MaxTimestamp (set by the sink group from the message's Kafka time
// and its clock-skew bound) is future_timestamp: the one rejection that
// depends on more than the bytes, so the JSON Schema cannot say it. An empty sg_event_id counts as absent.
//
// Event.Custom is a JSON object of the custom keys and their values as sent,
// in input order, with the white space between tokens removed (string
// escapes and number spellings are kept byte for byte).
//
// # Performance
//
// The Decoder is a single-pass, strict scanner written for this contract
// (no reflection, no intermediate tree): all strings of one message's
// accepted events share one allocation, categories a second. A Decoder is
// not safe for concurrent use; give each goroutine its own (they are cheap).
package schemas
