package api

// Bounce purge settings (SendGrid's /v3/mail_settings/bounce_purge). The
// purge itself runs in bouncer api (suppression.Purger, every
// --bounce-purge-interval).

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// PurgeStore keeps an account's bounce purge setting. Both methods touch
// only the given account's setting.
type PurgeStore interface {
	// BouncePurge returns the newest setting; everything zero when none
	// was ever stored.
	BouncePurge(ctx context.Context, account string) (accounts.BouncePurge, error)
	// SetBouncePurge stores a new version as of at; the newest wins.
	SetBouncePurge(ctx context.Context, account string, p accounts.BouncePurge, at time.Time) error
}

// bouncePurgeBody is the setting as SendGrid shapes it: days are null when
// not set.
type bouncePurgeBody struct {
	Enabled     bool `json:"enabled"`
	HardBounces *int `json:"hard_bounces"`
	SoftBounces *int `json:"soft_bounces"`
}

func showPurge(p accounts.BouncePurge) bouncePurgeBody {
	b := bouncePurgeBody{Enabled: p.Enabled}
	if p.HardDays > 0 {
		b.HardBounces = &p.HardDays
	}
	if p.SoftDays > 0 {
		b.SoftBounces = &p.SoftDays
	}
	return b
}

func (s *server) purgeStore(w http.ResponseWriter, r *http.Request) (PurgeStore, bool) {
	return configured(s, w, r, s.cfg.BouncePurge, "bounce purge is")
}

// handleBouncePurgeGet: GET /v3/mail_settings/bounce_purge.
func (s *server) handleBouncePurgeGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.purgeStore(w, r)
		if !ok {
			return
		}
		p, err := store.BouncePurge(r.Context(), account(r))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, showPurge(p))
	})
}

// handleBouncePurgePatch: PATCH /v3/mail_settings/bounce_purge with
// {"enabled": bool, "hard_bounces": days or null, "soft_bounces": days or
// null}; fields left out keep their value, null clears the days.
func (s *server) handleBouncePurgePatch() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.purgeStore(w, r)
		if !ok {
			return
		}
		var raw map[string]json.RawMessage
		err := decodeBody(r, &raw)
		if err == nil && raw == nil {
			err = errorf(EInvalid, "", "request body must be a JSON object")
		}
		var p accounts.BouncePurge
		if err == nil {
			p, err = store.BouncePurge(r.Context(), account(r))
		}
		if err == nil {
			err = applyPurgePatch(&p, raw)
		}
		if err == nil && len(raw) > 0 {
			err = store.SetBouncePurge(r.Context(), account(r), p, s.now())
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, showPurge(p))
	})
}

func applyPurgePatch(p *accounts.BouncePurge, raw map[string]json.RawMessage) error {
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
				return errorf(EInvalid, "enabled", "enabled must be true or false")
			}
			p.Enabled = *b
		case "hard_bounces", "soft_bounces":
			var d *int
			if err := json.Unmarshal(v, &d); err != nil || (d != nil && (*d < 1 || *d > accounts.MaxPurgeDays)) {
				return errorf(EInvalid, k, "%s must be a number of days from 1 to %d, or null", k, accounts.MaxPurgeDays)
			}
			days := 0
			if d != nil {
				days = *d
			}
			if k == "hard_bounces" {
				p.HardDays = days
			} else {
				p.SoftDays = days
			}
		default:
			return errorf(EInvalid, k, "unknown field %q: the setting has enabled, hard_bounces and soft_bounces", k)
		}
	}
	return nil
}
