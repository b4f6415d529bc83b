package schemas

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// EventIDPrefix starts every derived sg_event_id, so a person can tell a
// derived id from one the producer sent (Event.EventIDDerived says so too).
const EventIDPrefix = "bnc1_"

// DeriveEventID returns the sg_event_id given to an event that arrived
// without one: EventIDPrefix followed by the unpadded base64url encoding of
// the first 16 bytes of
//
//	SHA-256("bouncer/sg_event_id/v1" 0x00 topic 0x00 partition 0x00 offset 0x00 index)
//
// where partition, offset and index are in decimal ASCII and 0x00 is one zero
// byte. The result is 27 characters. It depends only on the event's
// coordinates, so every consumer, in any language, derives the same id, and a
// redelivered message gets the same ids again.
func DeriveEventID(at Coordinates, index int) string {
	return string(appendEventID(nil, nil, at, index))
}

func (d *Decoder) appendEventID(dst []byte, at Coordinates, index int) []byte {
	var out []byte
	out, d.idbuf = appendEventIDBuf(dst, d.idbuf, at, index)
	return out
}

func appendEventID(dst, scratch []byte, at Coordinates, index int) []byte {
	out, _ := appendEventIDBuf(dst, scratch, at, index)
	return out
}

func appendEventIDBuf(dst, buf []byte, at Coordinates, index int) (_, _ []byte) {
	buf = append(buf[:0], "bouncer/sg_event_id/v1\x00"...)
	buf = append(buf, at.Topic...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(at.Partition), 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, at.Offset, 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(index), 10)
	sum := sha256.Sum256(buf)
	dst = append(dst, EventIDPrefix...)
	dst = base64.RawURLEncoding.AppendEncode(dst, sum[:16])
	return dst, buf
}
