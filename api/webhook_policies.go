package api

// Webhook security policies: SendGrid's /v3/user/webhooks/security/policies
// (five operations, shapes as its specification has them). A policy holds
// OAuth 2.0 client credentials (with scopes), a SendGrid signing key, or
// both; a webhook uses one through its security_policy field (bouncer's
// choice: SendGrid documents attaching policies to Inbound Parse webhooks,
// and its Event Webhook API has no such field; see docs/webhooks.md).
//
// Contract:
//   - The client secret is sealed at rest and never shown; the private
//     key is never shown, its public half is (signature.public_key).
//   - Another account's policy id answers 404 like one that does not
//     exist, on every route; a webhook can use only its account's
//     policies.
//   - A policy in use by a webhook is deleted only with ?force=true, which
//     detaches it from those webhooks first (they keep their own
//     settings).

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/google/uuid"
)

const (
	// MaxPolicyName bounds a policy's name, in characters.
	MaxPolicyName = 100
	// MaxPolicyScopes bounds a policy's OAuth scopes; maxScopeLength one
	// scope's length.
	MaxPolicyScopes = 20
	maxScopeLength  = 128
)

// policyJSON is a policy in SendGrid's shape; oauth and signature appear
// when the policy has them.
type policyJSON struct {
	ID        string               `json:"id"`
	Name      string               `json:"name"`
	OAuth     *policyOAuthJSON     `json:"oauth,omitempty"`
	Signature *policySignatureJSON `json:"signature,omitempty"`
}

type policyOAuthJSON struct {
	ClientID string   `json:"client_id"`
	TokenURL string   `json:"token_url"`
	Scopes   []string `json:"scopes"`
}

type policySignatureJSON struct {
	PublicKey string `json:"public_key"`
}

func policyJSONOf(p *subscription.Policy) policyJSON {
	out := policyJSON{ID: p.ID, Name: p.Name}
	if p.OAuth != nil {
		out.OAuth = &policyOAuthJSON{ClientID: p.OAuth.ClientID, TokenURL: p.OAuth.TokenURL, Scopes: append([]string{}, p.OAuth.Scopes...)}
	}
	if p.SignedKey != nil {
		out.Signature = &policySignatureJSON{PublicKey: p.PublicKey}
	}
	return out
}

// policyBody is the body of create and update. oauth and signature are
// raw so that absent (unchanged) and null (removed) differ.
type policyBody struct {
	Name      *string         `json:"name"`
	OAuth     json.RawMessage `json:"oauth"`
	Signature json.RawMessage `json:"signature"`
	// The id of a response, accepted and ignored (a GET's policy may be
	// sent back as a PATCH).
	ID json.RawMessage `json:"id"`
}

type policyOAuthBody struct {
	ClientID     *string   `json:"client_id"`
	ClientSecret *string   `json:"client_secret"`
	TokenURL     *string   `json:"token_url"`
	Scopes       *[]string `json:"scopes"`
}

type policySignatureBody struct {
	Enabled *bool `json:"enabled"`
	// A response's public key, ignored.
	PublicKey json.RawMessage `json:"public_key"`
}

// decodeNested decodes one object field of a body strictly.
func decodeNested(raw json.RawMessage, field string, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
		return errorf(EInvalid, field, "%s must be an object or null", field)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			if len(name) > 64 || !utf8.ValidString(name) {
				name = "(unprintable)"
			}
			return errorf(EInvalid, field+"."+name, "unknown field %q in %s: see the request body schema in /v3/openapi.json", name, field)
		}
		return errorf(EInvalid, field, "%s is not valid: %s", field, jsonProblem(err))
	}
	return nil
}

// jsonProblem says what was wrong with a nested value without echoing it.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + te.Field + " has the wrong type (want " + te.Type.String() + ")"
	}
	return "malformed JSON"
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// apply checks the body and applies it to p (a new zero policy on create).
func (b *policyBody) apply(p *subscription.Policy, create bool, st WebhookStore) error {
	switch {
	case b.Name != nil:
		name := strings.TrimSpace(*b.Name)
		if name == "" || utf8.RuneCountInString(name) > MaxPolicyName || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			return errorf(EInvalid, "name", "name must be 1 to %d printable characters", MaxPolicyName)
		}
		p.Name = name
	case create:
		return errorf(EInvalid, "name", "name is required: a name for the policy, e.g. \"warehouse OAuth\"")
	}
	switch {
	case b.OAuth == nil:
	case isNull(b.OAuth):
		p.OAuth = nil
	default:
		var ob policyOAuthBody
		if err := decodeNested(b.OAuth, "oauth", &ob); err != nil {
			return err
		}
		prevScopes := []string(nil)
		if p.OAuth != nil {
			prevScopes = p.OAuth.Scopes
		}
		next, err := applyOAuthFields(p.OAuth, ob.ClientID, ob.ClientSecret, ob.TokenURL, st.WebhookGuard(), oauthPolicyFields)
		if err != nil {
			return err
		}
		if next == nil && ob.ClientID == nil && ob.TokenURL == nil && ob.ClientSecret == nil {
			return errorf(EInvalid, "oauth", "oauth needs client_id, client_secret and token_url (null removes OAuth from the policy)")
		}
		if next != nil {
			c := *next // never change the policy as read
			next = &c
			next.Scopes = prevScopes
			if ob.Scopes != nil {
				scopes, err := checkScopes(*ob.Scopes)
				if err != nil {
					return err
				}
				next.Scopes = scopes
			}
		}
		p.OAuth = next
	}
	switch {
	case b.Signature == nil:
	case isNull(b.Signature):
		p.SignedKey, p.PublicKey = nil, ""
	default:
		var sb policySignatureBody
		if err := decodeNested(b.Signature, "signature", &sb); err != nil {
			return err
		}
		if sb.Enabled == nil {
			return errorf(EInvalid, "signature.enabled", "signature.enabled is required: true signs deliveries with a new P-256 key, false stops signing")
		}
		if *sb.Enabled && p.SignedKey == nil {
			key, err := sign.NewSigningKey()
			if err != nil {
				return err
			}
			pk, err := sign.PublicKeyBase64(key)
			if err != nil {
				return err
			}
			p.SignedKey, p.PublicKey = key, pk
		} else if !*sb.Enabled {
			p.SignedKey, p.PublicKey = nil, ""
		}
	}
	if p.OAuth == nil && p.SignedKey == nil {
		return errorf(EInvalid, "", `a security policy needs oauth or signature, or both: e.g. {"name":"signed","signature":{"enabled":true}}`)
	}
	return nil
}

// checkScopes returns the scopes of a request: RFC 6749 scope tokens
// (printable ASCII without spaces, quotes or backslashes), no duplicates.
func checkScopes(in []string) ([]string, error) {
	if len(in) > MaxPolicyScopes {
		return nil, errorf(EInvalid, "oauth.scopes", "oauth.scopes holds at most %d scopes", MaxPolicyScopes)
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, sc := range in {
		ok := sc != "" && len(sc) <= maxScopeLength
		for i := 0; ok && i < len(sc); i++ {
			c := sc[i]
			ok = c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e
		}
		if !ok {
			return nil, errorf(EInvalid, "oauth.scopes", "each scope must be 1 to %d printable ASCII characters without spaces, quotes or backslashes (RFC 6749 section 3.3)", maxScopeLength)
		}
		if !seen[sc] {
			seen[sc] = true
			out = append(out, sc)
		}
	}
	return out, nil
}

type policyEnvelope struct {
	Policy policyJSON `json:"policy"`
}

// handlePolicyCreate: POST /v3/user/webhooks/security/policies: 201.
func (s *server) handlePolicyCreate(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	var body policyBody
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Second)
	p := subscription.Policy{ID: id.String(), AccountID: account(r), Created: now, UpdatedAt: now}
	if err := body.apply(&p, true, st); err != nil {
		return err
	}
	if err := st.CreateSecurityPolicy(r.Context(), account(r), p); err != nil {
		if errors.Is(err, subscription.ErrPolicyLimit) {
			return errorf(EInvalid, "", "You have reached the maximum number of security policies (%d per account): delete one before creating another.", subscription.MaxPoliciesPerAccount)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, policyEnvelope{policyJSONOf(&p)})
	return nil
}

// handlePolicyList: GET /v3/user/webhooks/security/policies.
func (s *server) handlePolicyList(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	ps, err := st.SecurityPolicies(r.Context(), account(r))
	if err != nil {
		return err
	}
	out := struct {
		Policies []policyJSON `json:"policies"`
	}{Policies: []policyJSON{}}
	for i := range ps {
		out.Policies = append(out.Policies, policyJSONOf(&ps[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handlePolicyGet: GET /v3/user/webhooks/security/policies/{id}.
func (s *server) handlePolicyGet(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	p, err := loadByID(r, st.SecurityPolicy)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, policyEnvelope{policyJSONOf(&p)})
	return nil
}

// handlePolicyUpdate: PATCH /v3/user/webhooks/security/policies/{id}: the
// fields given change; oauth without client_secret keeps the secret.
func (s *server) handlePolicyUpdate(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	p, err := loadByID(r, st.SecurityPolicy)
	if err != nil {
		return err
	}
	var body policyBody
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	if err := body.apply(&p, false, st); err != nil {
		return err
	}
	p.UpdatedAt = s.now().UTC().Truncate(time.Second)
	if err := st.PutSecurityPolicy(r.Context(), account(r), p); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, policyEnvelope{policyJSONOf(&p)})
	return nil
}

// handlePolicyDelete: DELETE /v3/user/webhooks/security/policies/{id}
// [?force=true]: 200 {"policy": null}. A policy webhooks use needs force,
// which detaches it from them first.
func (s *server) handlePolicyDelete(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	p, err := loadByID(r, st.SecurityPolicy)
	if err != nil {
		return err
	}
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		if force, err = strconv.ParseBool(v); err != nil {
			return errorf(EInvalid, "force", "force must be true or false")
		}
	}
	ws, err := st.Webhooks(r.Context(), account(r))
	if err != nil {
		return err
	}
	var users []subscription.Webhook
	for _, wh := range ws {
		if wh.SecurityPolicy == p.ID {
			users = append(users, wh)
		}
	}
	if len(users) > 0 && !force {
		ids := make([]string, len(users))
		for i, u := range users {
			ids[i] = u.ID
		}
		return errorf(EInvalid, "force", "security policy %s is used by webhook %s: change their security_policy first, or delete with ?force=true to detach it from them", p.ID, strings.Join(ids, ", "))
	}
	now := s.now().UTC().Truncate(time.Second)
	for _, u := range users {
		u.SecurityPolicy, u.UpdatedAt = "", now
		if err := st.PutWebhook(r.Context(), account(r), u); err != nil {
			return err
		}
	}
	if err := st.DeleteSecurityPolicy(r.Context(), account(r), p, now); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Policy *string `json:"policy"`
	}{})
	return nil
}
