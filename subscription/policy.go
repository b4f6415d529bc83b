package subscription

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// MaxPoliciesPerAccount bounds an account's security policies (SendGrid
// states no limit; bouncer keeps every account's set small).
const MaxPoliciesPerAccount = 20

// Policy is a webhook security policy (SendGrid's
// /v3/user/webhooks/security/policies): OAuth 2.0 client credentials, a
// SendGrid signing key, or both, that subscriptions use by naming it in
// Webhook.SecurityPolicy. Secrets in the clear; at rest it is a
// SealedPolicy.
type Policy struct {
	ID        string
	AccountID string
	Name      string
	// OAuth, when set, authorizes deliveries of the webhooks using the
	// policy (Scopes are asked for in the token request).
	OAuth *OAuth
	// SignedKey signs SendGrid's Signed Event Webhook headers of the
	// webhooks using the policy; nil: the policy does not sign.
	SignedKey *ecdsa.PrivateKey
	// PublicKey is its public half, base64 DER, as SendGrid shows it.
	PublicKey string
	Created   time.Time
	UpdatedAt time.Time
	// Version orders the writes of one policy; the highest wins.
	Version uint64
}

// SealedPolicy is one version of a policy as stored: secrets sealed to
// the policy's account, id and purpose, the Policy's OAuth and SignedKey
// nil.
type SealedPolicy struct {
	Policy
	Deleted           bool
	OAuthClientID     string
	OAuthTokenURL     string
	OAuthScopes       []string
	OAuthSecretSealed string
	Signed            bool
	SigningKeySealed  string
}

// Purposes of a policy's sealed values.
const (
	sealPolicyOAuthSecret = "policy-oauth-client-secret"
	sealPolicySigningKey  = "policy-signing-key"
)

// PolicyStore keeps the versions of security policies. Reads return the
// newest version of each; deleted ones are left out.
type PolicyStore interface {
	// SecurityPolicies returns the account's policies, oldest first.
	SecurityPolicies(ctx context.Context, account string) ([]SealedPolicy, error)
	// AllSecurityPolicies returns every account's policies in one read.
	AllSecurityPolicies(ctx context.Context) ([]SealedPolicy, error)
	// WriteSecurityPolicies stores versions of policies in one write.
	WriteSecurityPolicies(ctx context.Context, ps []SealedPolicy) error
}

// ErrPolicyLimit: the account has MaxPoliciesPerAccount policies.
var ErrPolicyLimit = errors.New("security policy limit reached")

// SealPolicy returns the row storing p for account at version.
func (o *Sealer) SealPolicy(account string, p Policy, version uint64) (SealedPolicy, error) {
	row := SealedPolicy{Policy: p}
	row.AccountID, row.Version = account, version
	row.OAuth, row.SignedKey, row.PublicKey = nil, nil, ""
	if p.OAuth != nil {
		if p.OAuth.ClientID == "" || p.OAuth.TokenURL == "" || p.OAuth.ClientSecret == "" {
			return row, fmt.Errorf("policy %s: OAuth needs a client id, a client secret and a token URL", p.ID)
		}
		row.OAuthClientID, row.OAuthTokenURL = p.OAuth.ClientID, p.OAuth.TokenURL
		row.OAuthScopes = append([]string{}, p.OAuth.Scopes...)
		var err error
		if row.OAuthSecretSealed, err = o.keys.Seal([]byte(p.OAuth.ClientSecret), sealContext(account, p.ID, sealPolicyOAuthSecret)); err != nil {
			return row, err
		}
	}
	if p.SignedKey != nil {
		der, err := sign.MarshalPrivateKey(p.SignedKey)
		if err != nil {
			return row, err
		}
		if row.SigningKeySealed, err = o.keys.Seal(der, sealContext(account, p.ID, sealPolicySigningKey)); err != nil {
			return row, err
		}
		row.Signed, row.PublicKey = true, p.PublicKey
		if row.PublicKey == "" {
			if row.PublicKey, err = sign.PublicKeyBase64(p.SignedKey); err != nil {
				return row, err
			}
		}
	}
	return row, nil
}

// OpenPolicy returns the policy of row with its secrets opened.
func (o *Sealer) OpenPolicy(row SealedPolicy) (Policy, error) {
	p := row.Policy
	p.OAuth, p.SignedKey = nil, nil
	if !row.Signed {
		p.PublicKey = ""
	}
	if row.OAuthClientID != "" {
		p.OAuth = &OAuth{ClientID: row.OAuthClientID, TokenURL: row.OAuthTokenURL, Scopes: append([]string{}, row.OAuthScopes...)}
		c := sealContext(row.AccountID, row.ID, sealPolicyOAuthSecret)
		v, err := o.cached(c, row.OAuthSecretSealed, func() (any, error) { return o.keys.Open(row.OAuthSecretSealed, c) })
		if err != nil {
			return p, fmt.Errorf("security policy %s: OAuth client secret: %w", row.ID, err)
		}
		p.OAuth.ClientSecret = string(v.([]byte))
	}
	if row.Signed && row.SigningKeySealed != "" {
		c := sealContext(row.AccountID, row.ID, sealPolicySigningKey)
		v, err := o.cached(c, row.SigningKeySealed, func() (any, error) {
			der, err := o.keys.Open(row.SigningKeySealed, c)
			if err != nil {
				return nil, err
			}
			return sign.ParsePrivateKey(der)
		})
		if err != nil {
			return p, fmt.Errorf("security policy %s: signing key: %w", row.ID, err)
		}
		p.SignedKey = v.(*ecdsa.PrivateKey)
	}
	return p, nil
}

// Apply makes w use policy p, as delivery sends it: the policy's OAuth
// replaces w's own, and its signing key replaces w's SendGrid key; a part
// the policy does not have leaves w's own setting. The Standard Webhooks
// secret is w's own always.
func (p *Policy) Apply(w *Webhook) {
	if p.OAuth != nil {
		o := *p.OAuth
		w.OAuth = &o
	}
	if p.SignedKey != nil {
		w.SignedKey, w.PublicKey = p.SignedKey, p.PublicKey
	}
}

// SecurityPolicies returns the account's policies with their secrets
// opened, oldest first.
func (s *Service) SecurityPolicies(ctx context.Context, account string) ([]Policy, error) {
	if account == "" {
		return nil, ErrNoAccount
	}
	rows, err := s.store.SecurityPolicies(ctx, account)
	if err != nil {
		return nil, err
	}
	o := NewSealer(s.keys)
	out := make([]Policy, 0, len(rows))
	for _, row := range rows {
		p, err := o.OpenPolicy(row)
		if err != nil {
			return nil, &SealError{ID: row.ID, Err: err}
		}
		out = append(out, p)
	}
	return out, nil
}

// SecurityPolicy returns one policy of the account; ok is false when it
// has none with that id.
func (s *Service) SecurityPolicy(ctx context.Context, account, id string) (Policy, bool, error) {
	ps, err := s.SecurityPolicies(ctx, account)
	if err != nil {
		return Policy{}, false, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p, true, nil
		}
	}
	return Policy{}, false, nil
}

// CreateSecurityPolicy stores the new policy p unless the account has
// MaxPoliciesPerAccount (ErrPolicyLimit). The limit is checked against
// what the store holds, so two creates racing in different processes may
// both pass it: it bounds an account's policies, it is not exact.
func (s *Service) CreateSecurityPolicy(ctx context.Context, account string, p Policy) error {
	ps, err := s.store.SecurityPolicies(ctx, account)
	if err != nil {
		return err
	}
	if len(ps) >= MaxPoliciesPerAccount {
		return ErrPolicyLimit
	}
	return s.PutSecurityPolicy(ctx, account, p)
}

// PutSecurityPolicy stores p as the newest version of its policy.
func (s *Service) PutSecurityPolicy(ctx context.Context, account string, p Policy) error {
	if account == "" {
		return ErrNoAccount
	}
	row, err := NewSealer(s.keys).SealPolicy(account, p, NextVersion(p.Version, s.now()))
	if err != nil {
		return err
	}
	return s.store.WriteSecurityPolicies(ctx, []SealedPolicy{row})
}

// DeleteSecurityPolicy writes a tombstone of p as read, which keeps no
// secret. Subscriptions that name it keep its id and go back to their own
// settings (delivery finds no such policy).
func (s *Service) DeleteSecurityPolicy(ctx context.Context, account string, p Policy, at time.Time) error {
	if account == "" {
		return ErrNoAccount
	}
	var row SealedPolicy
	row.AccountID, row.ID, row.Version, row.Deleted = account, p.ID, NextVersion(p.Version, s.now()), true
	row.Name, row.Created, row.UpdatedAt = p.Name, p.Created, at
	return s.store.WriteSecurityPolicies(ctx, []SealedPolicy{row})
}
