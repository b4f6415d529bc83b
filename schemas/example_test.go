package schemas_test

import (
	"fmt"

	"github.com/bouncer-mail/bouncer/schemas"
)

func ExampleDecoder_Decode() {
	msg := []byte(`[
	  {"email":"John.Doe@Example.com","timestamp":1700000200,"event":"bounce","type":"blocked",
	   "reason":"554 5.7.1 blocked using Spamhaus","status":"5.7.1","sg_event_id":"6g4ZI7SA","customer":"c-9"},
	  {"email":"a..b@example.com","timestamp":1700000201,"event":"dropped","attempt":"1"},
	  {"email":"nobody","timestamp":1700000202,"event":"open"}
	]`)
	var d schemas.Decoder // one per goroutine
	events, rejections := d.Decode(msg, schemas.Coordinates{Topic: "events", Partition: 0, Offset: 7}, nil)
	for _, e := range events {
		fmt.Println(e.Index, e.Event, e.Type, e.EmailNorm, e.Domain, e.AddressValid, e.Custom, e.EventIDDerived)
	}
	for _, r := range rejections {
		fmt.Println(r.Index, r.Code, r.Detail)
	}
	// Output:
	// 0 bounce blocked john.doe@example.com example.com true {"customer":"c-9"} false
	// 1 dropped  a..b@example.com example.com false  true
	// 2 invalid_email field "email": "nobody" is not an email address
}
