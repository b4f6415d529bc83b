package main

import (
	"encoding/json"
	"testing"
)

// Webhook security policies: globex tries acme's policy on every route.
func init() {
	e := tenancyExercises
	const base = "/v3/user/webhooks/security/policies"
	e["POST "+base] = tries(tenancyAttempt{"POST", base, `{"name":"acme-policy","id":"{id:policy}","signature":{"enabled":true}}`})
	e["GET "+base] = tries(tenancyAttempt{"GET", base + "?account_id=acme", ""})
	e["GET "+base+"/{id}"] = tries(tenancyAttempt{"GET", base + "/{id:policy}", ""})
	e["PATCH "+base+"/{id}"] = tries(tenancyAttempt{"PATCH", base + "/{id:policy}", `{"name":"stolen","signature":{"enabled":false},"oauth":{"client_id":"x","client_secret":"y","token_url":"https://a.example/t"}}`})
	e["DELETE "+base+"/{id}"] = tries(tenancyAttempt{"DELETE", base + "/{id:policy}?force=true", ""})
	leaks = append(leaks, "acme-policy", "policy-victim-client")
	var before string
	tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		code, body, _ := f.call(t, f.keyA, "POST", base, `{"name":"acme-policy","signature":{"enabled":true},`+
			`"oauth":{"client_id":"policy-victim-client","client_secret":"policy-victim-secret","token_url":"https://auth.acme.example/t","scopes":["s1"]}}`)
		var p struct {
			Policy struct {
				ID string `json:"id"`
			} `json:"policy"`
		}
		if code != 201 || json.Unmarshal([]byte(body), &p) != nil || p.Policy.ID == "" {
			t.Fatalf("acme creates a security policy: %d %s", code, body)
		}
		v.IDs["policy"] = p.Policy.ID
		before = body
	})
	tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		code, body, _ := f.call(t, f.keyA, "GET", base+"/"+v.IDs["policy"], "")
		if code != 200 || body != before {
			t.Errorf("acme's security policy after globex's attempts: %d %s, was %s", code, body, before)
		}
	})
}
