package enrich_test

import (
	"fmt"
	"strings"

	"github.com/bouncer-mail/bouncer/enrich"
)

func ExampleClassifier_Classify() {
	c := enrich.MustNew()
	res, err := c.Classify(enrich.Input{
		Email:  "kim@gmail.com",
		Reason: "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos. - gsmtp",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.BounceType, res.Classification, res.Reason, res.Rule, res.ReplyCode, res.Status)
	// Output: hard Invalid Address user_unknown google.user_unknown.does_not_exist 550 5.1.1
}

func ExampleParseRules() {
	rules, err := enrich.ParseRules(strings.NewReader(`
# our relay's wording for a full mailbox
acme.full  mailbox_full  text: box stuffed|storage exhausted
`), "acme.rules")
	if err != nil {
		panic(err)
	}
	c := enrich.MustNew(rules...) // tried before the built-in rules
	res, _ := c.Classify(enrich.Input{Reason: "452 4.2.2 box stuffed"})
	fmt.Println(res.BounceType, res.Reason, res.Rule)
	// Output: soft mailbox_full acme.full
}
