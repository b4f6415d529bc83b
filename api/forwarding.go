package api

// Bounce forwarding settings (SendGrid's /v3/mail_settings/forward_bounce).

import (
	"context"
	"encoding/json"
	"net/http"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// ForwardingStore keeps an account's bounce forwarding settings. Both
// methods touch only the given account's setting. sinks/clickhouse's Store
// implements it.
type ForwardingStore interface {
	// ForwardBounce returns the newest setting; {false, ""} when none was
	// ever stored.
	ForwardBounce(ctx context.Context, account string) (accounts.ForwardBounce, error)
	// SetForwardBounce stores a new version of the setting as of at; the
	// newest version wins.
	SetForwardBounce(ctx context.Context, account string, fb accounts.ForwardBounce, at time.Time) error
}

// maxForwardAddress bounds the forwarding address (RFC 5321's 254).
const maxForwardAddress = 254

// forwardBounceBody is the JSON of the setting, as SendGrid shapes it.
type forwardBounceBody struct {
	Enabled bool   `json:"enabled"`
	Email   string `json:"email"`
}

func (s *server) forwarding(w http.ResponseWriter, r *http.Request) (ForwardingStore, bool) {
	return configured(s, w, r, s.cfg.Forwarding, "bounce forwarding is")
}

// handleForwardBounceGet: GET /v3/mail_settings/forward_bounce.
func (s *server) handleForwardBounceGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.forwarding(w, r)
		if !ok {
			return
		}
		fb, err := store.ForwardBounce(r.Context(), account(r))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, forwardBounceBody{Enabled: fb.Enabled, Email: fb.Email})
	})
}

// handleForwardBouncePatch: PATCH /v3/mail_settings/forward_bounce with
// {"enabled": bool, "email": "address" or null}; either may be left out
// and keeps its value. An empty or null email removes the address;
// enabling needs one.
func (s *server) handleForwardBouncePatch() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.forwarding(w, r)
		if !ok {
			return
		}
		patch, err := parseForwardBouncePatch(r)
		var fb accounts.ForwardBounce
		if err == nil {
			fb, err = store.ForwardBounce(r.Context(), account(r))
		}
		if err == nil {
			fb.AccountID = account(r)
			if patch.enabled != nil {
				fb.Enabled = *patch.enabled
			}
			if patch.email != nil {
				fb.Email = *patch.email
			}
			if fb.Enabled && fb.Email == "" {
				err = errorf(EInvalid, "email", "an email address is required to enable bounce forwarding")
			}
		}
		if err == nil && (patch.enabled != nil || patch.email != nil) {
			err = store.SetForwardBounce(r.Context(), account(r), fb, s.now())
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, forwardBounceBody{Enabled: fb.Enabled, Email: fb.Email})
	})
}

type forwardBouncePatch struct {
	enabled *bool
	email   *string
}

func parseForwardBouncePatch(r *http.Request) (forwardBouncePatch, error) {
	var p forwardBouncePatch
	var raw map[string]json.RawMessage
	if err := decodeBody(r, &raw); err != nil {
		return p, err
	}
	if raw == nil {
		return p, errorf(EInvalid, "", "request body must be a JSON object")
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		switch k {
		case "enabled":
			var b *bool
			if err := json.Unmarshal(v, &b); err != nil || b == nil {
				return p, errorf(EInvalid, "enabled", "enabled must be true or false")
			}
			p.enabled = b
		case "email":
			var e *string
			if err := json.Unmarshal(v, &e); err != nil {
				return p, errorf(EInvalid, "email", "email must be a string or null")
			}
			addr := ""
			if e != nil && strings.TrimSpace(*e) != "" {
				var err error
				if addr, err = checkForwardAddress(*e); err != nil {
					return p, err
				}
			}
			p.email = &addr
		default:
			return p, errorf(EInvalid, k, "unknown field %q: the setting has enabled and email", k)
		}
	}
	return p, nil
}

// checkForwardAddress accepts one bare address (no display name, no
// list), trimmed, ASCII, at most 254 bytes.
func checkForwardAddress(raw string) (string, error) {
	email, _, err := checkEmail("email", raw)
	if err != nil {
		return "", err
	}
	bad := func() (string, error) {
		return "", errorf(EInvalid, "email", "email is not a valid email address: want one address such as bounces@example.com")
	}
	if len(email) > maxForwardAddress {
		return bad()
	}
	for i := 0; i < len(email); i++ {
		if email[i] >= 0x80 {
			return bad()
		}
	}
	parsed, err := mail.ParseAddress(email)
	if err != nil || parsed.Name != "" || parsed.Address != email {
		return bad()
	}
	at := strings.LastIndexByte(email, '@')
	if domain := email[at+1:]; !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return bad()
	}
	return email, nil
}
