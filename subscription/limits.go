package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
)

// MaxPerAccount is how many subscriptions one account may have; SendGrid
// allows five (its max_allowed).
const MaxPerAccount = 5

// ErrLimit is CreateWebhook's answer when the account has MaxPerAccount
// subscriptions.
var ErrLimit = errors.New("the account has the maximum number of webhooks")

// URLTakenError is the answer of CreateWebhook and ChangeWebhookURL when
// subscription ID of the account has the URL.
type URLTakenError struct{ URL, ID string }

func (e *URLTakenError) Error() string {
	return fmt.Sprintf("webhook %s has the URL %s", e.ID, e.URL)
}

// ClaimLog orders the changes that can break the per-account limits
// (package sinks/webhook/claims has the rules; its Log implements this
// over Kafka).
type ClaimLog interface {
	// Append adds a claim and returns it with its place in the log.
	Append(ctx context.Context, c claims.Claim) (claims.Claim, error)
	// Read returns the claims of scope and account up to the log's end.
	Read(ctx context.Context, scope, account string) ([]claims.Claim, error)
}

// HeadStore is what the limits need of a Store beyond it: every
// subscription the account ever had at its newest version (tombstones
// too), and the name of the store, which scopes the claims.
type HeadStore interface {
	WebhookHeads(ctx context.Context, account string) ([]claims.Existing, error)
	Database() string
}

// UseClaims makes the Service decide creates, URL changes and deletes
// through log, so that the limits (MaxPerAccount, one URL each) hold
// across processes. Without it they are decided under a lock of this
// process. The store must implement HeadStore.
func (s *Service) UseClaims(log ClaimLog) { s.claims = log }

// claimLocks serialises this process's decisions per account when there
// is no claim log.
var claimLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func lockAccount(account string) func() {
	claimLocks.mu.Lock()
	if claimLocks.locks == nil {
		claimLocks.locks = map[string]*sync.Mutex{}
	}
	m := claimLocks.locks[account]
	if m == nil {
		m = &sync.Mutex{}
		claimLocks.locks[account] = m
	}
	claimLocks.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// CreateWebhook stores the new subscription w unless the account has
// MaxPerAccount subscriptions (ErrLimit) or one with w's URL
// (*URLTakenError), however many creates race, in however many processes
// (with UseClaims; in this process only without).
func (s *Service) CreateWebhook(ctx context.Context, account string, w Webhook) error {
	if account == "" {
		return ErrNoAccount
	}
	row, err := NewSealer(s.keys).Seal(account, w, NextVersion(w.Version, s.now()))
	if err != nil {
		return err
	}
	res, err := s.claim(ctx, claims.Claim{Op: claims.OpCreate, Account: account, ID: w.ID, URL: w.URL, Version: row.Version}, row)
	if err != nil {
		return err
	}
	switch res.Outcome {
	case claims.LimitReached:
		return ErrLimit
	case claims.URLTaken:
		return &URLTakenError{URL: w.URL, ID: res.By}
	}
	return nil
}

// ChangeWebhookURL stores w, whose URL was oldURL when read, unless another
// subscription of the account has w's URL (*URLTakenError) or w no longer
// exists (ok false), decided like CreateWebhook.
func (s *Service) ChangeWebhookURL(ctx context.Context, account string, w Webhook, oldURL string) (bool, error) {
	if account == "" {
		return false, ErrNoAccount
	}
	row, err := NewSealer(s.keys).Seal(account, w, NextVersion(w.Version, s.now()))
	if err != nil {
		return false, err
	}
	res, err := s.claim(ctx, claims.Claim{Op: claims.OpURL, Account: account, ID: w.ID, URL: w.URL, OldURL: oldURL, Version: row.Version}, row)
	if err != nil {
		return false, err
	}
	switch res.Outcome {
	case claims.NotFound:
		return false, nil
	case claims.URLTaken:
		return false, &URLTakenError{URL: w.URL, ID: res.By}
	}
	return true, nil
}

// claim decides c and, when it is accepted, writes row. With the claim
// log: append c, read the store's subscriptions, then the account's claims
// (in that order: every row the store shows that a claim made has its
// claim in the log by then), decide, and write what accepted claims the
// store lacks, c's row among them (a process that died between its claim
// and its write leaves that to the next claim of the account).
func (s *Service) claim(ctx context.Context, c claims.Claim, row Sealed) (claims.Result, error) {
	heads, ok := s.store.(HeadStore)
	if !ok {
		return claims.Result{}, errors.New("webhook limits: the store cannot list subscription versions")
	}
	c.Scope = heads.Database()
	if s.claims == nil {
		defer lockAccount(c.Account)()
		existing, err := heads.WebhookHeads(ctx, c.Account)
		if err != nil {
			return claims.Result{}, err
		}
		res := claims.Decide(MaxPerAccount, existing, []claims.Claim{c})[c.Offset]
		if res.Outcome == claims.Accepted {
			return res, s.store.WriteWebhooks(ctx, []Sealed{row})
		}
		return res, nil
	}
	if row.Secrets != nil || row.SignedKey != nil {
		return claims.Result{}, errors.New("webhook limits: a claim would carry secrets in the clear")
	}
	raw, err := json.Marshal(row)
	if err != nil {
		return claims.Result{}, err
	}
	c.Row = raw
	c, err = s.claims.Append(ctx, c)
	if err != nil {
		return claims.Result{}, err
	}
	existing, err := heads.WebhookHeads(ctx, c.Account)
	if err != nil {
		return claims.Result{}, err
	}
	all, err := s.claims.Read(ctx, c.Scope, c.Account)
	if err != nil {
		return claims.Result{}, err
	}
	results := claims.Decide(MaxPerAccount, existing, all)
	res, ok := results[c.Offset]
	if !ok {
		return claims.Result{}, fmt.Errorf("webhook limits: claim %s at %d is not in the log read after it", c.ID, c.Offset)
	}
	var repairs []Sealed
	for _, r := range claims.Repairs(all, results, existing) {
		var w Sealed
		if err := json.Unmarshal(r.Row, &w); err != nil {
			return claims.Result{}, fmt.Errorf("webhook limits: claim %s at %d: %w", r.ID, r.Offset, err)
		}
		if w.AccountID != c.Account || w.ID != r.ID || w.Version != r.Version {
			return claims.Result{}, fmt.Errorf("webhook limits: claim %s at %d holds another row", r.ID, r.Offset)
		}
		repairs = append(repairs, w)
	}
	if len(repairs) > 0 {
		if err := s.store.WriteWebhooks(ctx, repairs); err != nil {
			return claims.Result{}, err
		}
	}
	return res, nil
}
