package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// SessionStore keeps the dashboard's sessions where every API process of a
// deployment sees them (ClickHouse in bouncer api), so a login works on
// every process behind a load balancer and outlives a restart. With a nil
// Config.Sessions they live in the process's memory only.
type SessionStore interface {
	// WriteSessions stores session states. The rows of one session merge:
	// the latest Seen counts, and Ended, once written, holds for good.
	WriteSessions(ctx context.Context, ss []accounts.Session) error
	// Sessions returns the sessions created at or after since that have not
	// ended: all of them, or with idHash set only that one.
	Sessions(ctx context.Context, idHash string, since time.Time) ([]accounts.Session, error)
}

// seenEvery is how often a session's use is written to the shared store:
// another process may take a session for idle up to this much early.
const seenEvery = 5 * time.Minute

type session struct {
	account        string
	keyID, keyHash string
	created, seen  time.Time
	// written is the Seen last written to the shared store.
	written time.Time
}

// sessionStore holds the sessions by SHA-256 of the cookie value. It holds
// at most total sessions, and at most perAccount of one account, so no
// account can log another's users out by logging in often.
//
// With shared set it is a cache of the shared store, kept like the key
// cache: reloaded whole when half of every has passed (when requests
// come), an unknown id looked up in the store at once (a login on another
// process, or before a restart), and never trusted when loaded longer ago
// than every: a logout or eviction by another process ends a session here
// within every, and while the store cannot be read after that, session
// requests get 503 (fail closed).
type sessionStore struct {
	total, perAccount int
	shared            SessionStore
	every, tryEvery   time.Duration

	// load is held while the shared store is read, so one reload runs at a
	// time; mu guards the maps and the sessions' times.
	load   sync.Mutex
	loaded time.Time
	tried  time.Time
	failed error

	mu        sync.Mutex
	byID      map[[32]byte]*session
	byAccount map[string]map[[32]byte]*session
}

func newSessionStore() *sessionStore {
	return &sessionStore{
		total: maxSessions, perAccount: maxAccountSessions,
		byID: map[[32]byte]*session{}, byAccount: map[string]map[[32]byte]*session{},
	}
}

func (s *server) sessions() *sessionStore { return s.sessionStore }

// sessionHash is the key of a cookie's id, in memory and (hex) in the store.
func sessionHash(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// csrfToken is the session's CSRF token: derived from the cookie's id (so
// every process knows it, and the store never holds it), not from its hash.
func csrfToken(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("bouncer dashboard csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// refresh reloads the shared store's sessions when due (or now, with
// force) and reports an error when the copy is too old to trust; st.load
// is held.
func (st *sessionStore) refresh(ctx context.Context, now time.Time, force bool) error {
	if st.shared == nil {
		return nil
	}
	due := st.loaded.IsZero() || now.Sub(st.loaded) >= st.every/2
	if force || due && (st.tried.IsZero() || now.Sub(st.tried) >= st.tryEvery) {
		st.tried = now
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.every)
		all, err := st.shared.Sessions(lctx, "", now.Add(-sessionMaxAge))
		cancel()
		st.failed = err
		if err == nil {
			st.replace(all)
			st.loaded = now
		}
	}
	if st.loaded.IsZero() || now.Sub(st.loaded) >= st.every {
		cause := st.failed
		if cause == nil {
			cause = fmt.Errorf("sessions loaded %v ago, not reloaded since", now.Sub(st.loaded))
		}
		return &Error{Code: EUnavailable, RetryAfter: storeRetryAfter, cause: fmt.Errorf("load dashboard sessions: %w", cause),
			Message: "dashboard sessions cannot be checked right now (their store does not answer): retry after the Retry-After seconds"}
	}
	return nil
}

// replace makes the stored sessions the cache's, keeping the later use
// this process saw of each.
func (st *sessionStore) replace(all []accounts.Session) {
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.byID
	st.byID = make(map[[32]byte]*session, len(all))
	st.byAccount = map[string]map[[32]byte]*session{}
	for _, x := range all {
		h, ok := parseHash(x.IDHash)
		if !ok {
			continue
		}
		sess := fromStored(x)
		if o := old[h]; o != nil {
			sess.seen = later(sess.seen, o.seen)
			sess.written = later(sess.written, o.written)
		}
		st.put(h, sess)
	}
}

func fromStored(x accounts.Session) *session {
	return &session{account: x.AccountID, keyID: x.KeyID, keyHash: x.KeyHash, created: x.Created, seen: x.Seen, written: x.Seen}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func parseHash(s string) ([32]byte, bool) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

func (st *sessionStore) stored(h [32]byte, x *session, ended bool) accounts.Session {
	return accounts.Session{IDHash: hex.EncodeToString(h[:]), AccountID: x.account, KeyID: x.keyID, KeyHash: x.keyHash,
		Created: x.created, Seen: x.seen, Ended: ended}
}

// get returns the session of a cookie's id, nil when there is none. With a
// shared store, an id this process does not know is looked up there.
func (st *sessionStore) get(ctx context.Context, id string, now time.Time) (*session, error) {
	h := sessionHash(id)
	if st.shared == nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.byID[h], nil
	}
	st.load.Lock()
	defer st.load.Unlock()
	if err := st.refresh(ctx, now, false); err != nil {
		return nil, err
	}
	st.mu.Lock()
	sess := st.byID[h]
	st.mu.Unlock()
	if sess != nil {
		return sess, nil
	}
	// Unknown here: logged in on another process, or before a restart. An
	// unknown id costs a lookup by the table's key; failures count against
	// the client's authentication budget (authAttempt).
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.every)
	found, err := st.shared.Sessions(lctx, hex.EncodeToString(h[:]), now.Add(-sessionMaxAge))
	cancel()
	if err != nil {
		return nil, &Error{Code: EUnavailable, RetryAfter: storeRetryAfter, cause: fmt.Errorf("look up a dashboard session: %w", err),
			Message: "dashboard sessions cannot be checked right now (their store does not answer): retry after the Retry-After seconds"}
	}
	if len(found) == 0 {
		return nil, nil
	}
	sess = fromStored(found[0])
	st.mu.Lock()
	defer st.mu.Unlock()
	if x := st.byID[h]; x != nil {
		return x, nil
	}
	st.put(h, sess)
	return sess, nil
}

// forget drops a session from this process only (it ended by time, or its
// key was revoked: every process sees that for itself).
func (st *sessionStore) forget(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.remove(sessionHash(id))
}

// end logs a session out, in the shared store too.
func (st *sessionStore) end(ctx context.Context, id string) error {
	h := sessionHash(id)
	st.mu.Lock()
	x := st.byID[h]
	st.mu.Unlock()
	if x != nil && st.shared != nil {
		if err := st.shared.WriteSessions(ctx, []accounts.Session{st.stored(h, x, true)}); err != nil {
			return fmt.Errorf("end dashboard session: %w", err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.remove(h)
	return nil
}

// touch marks a session used now, and writes that to the shared store
// once every seenEvery.
func (st *sessionStore) touch(ctx context.Context, id string, sess *session, now time.Time) error {
	st.mu.Lock()
	sess.seen = later(sess.seen, now)
	due := st.shared != nil && now.Sub(sess.written) >= seenEvery
	if due {
		sess.written = now
	}
	row := st.stored(sessionHash(id), sess, false)
	st.mu.Unlock()
	if !due {
		return nil
	}
	return st.shared.WriteSessions(ctx, []accounts.Session{row})
}

// remove drops a session; st.mu is held.
func (st *sessionStore) remove(h [32]byte) {
	x := st.byID[h]
	if x == nil {
		return
	}
	delete(st.byID, h)
	if own := st.byAccount[x.account]; own != nil {
		delete(own, h)
		if len(own) == 0 {
			delete(st.byAccount, x.account)
		}
	}
}

// put adds a session; st.mu is held.
func (st *sessionStore) put(h [32]byte, sess *session) {
	st.byID[h] = sess
	own := st.byAccount[sess.account]
	if own == nil {
		own = map[[32]byte]*session{}
		st.byAccount[sess.account] = own
	}
	own[h] = sess
}

// login stores sess under a new random id and returns the id. With a
// shared store, the cache is reloaded first, so the limits count every
// process's sessions (two logins of one account at the same moment on two
// processes may each miss the other's: the cap is then passed by one until
// the account's next login), and the new session and those it ends are
// written there before the id is given out.
func (st *sessionStore) login(ctx context.Context, sess *session, now time.Time) (string, error) {
	if st.shared == nil {
		id, _, err := st.add(sess, now)
		return id, err
	}
	st.load.Lock()
	defer st.load.Unlock()
	if err := st.refresh(ctx, now, true); err != nil {
		return "", err
	}
	id, ended, err := st.add(sess, now)
	if err != nil {
		return "", err
	}
	h := sessionHash(id)
	st.mu.Lock()
	rows := []accounts.Session{st.stored(h, sess, false)}
	for eh, x := range ended {
		rows = append(rows, st.stored(eh, x, true))
	}
	st.mu.Unlock()
	sess.written = sess.seen
	if err := st.shared.WriteSessions(ctx, rows); err != nil {
		st.mu.Lock()
		st.remove(h)
		st.mu.Unlock()
		return "", fmt.Errorf("store dashboard session: %w", err)
	}
	return id, nil
}

// add stores sess under a new random id and returns the id and the
// sessions it ended. When sess's account already has perAccount sessions,
// the account's session closest to its end is dropped. When the store
// holds total sessions, ended ones are dropped, and if that frees nothing,
// the session closest to its end among the accounts with the most
// sessions: an account is never logged out for room while another holds
// more sessions than it does.
func (st *sessionStore) add(sess *session, now time.Time) (string, map[[32]byte]*session, error) {
	id, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	ended := map[[32]byte]*session{}
	drop := func(h [32]byte, logout bool) {
		if x := st.byID[h]; x != nil && logout {
			ended[h] = x
		}
		st.remove(h)
	}
	if own := st.byAccount[sess.account]; len(own) >= st.perAccount {
		drop(soonest(own), true)
	}
	if len(st.byID) >= st.total {
		for h, x := range st.byID {
			if !now.Before(x.ends()) {
				drop(h, false)
			}
		}
	}
	if len(st.byID) >= st.total {
		most := 0
		for _, own := range st.byAccount {
			most = max(most, len(own))
		}
		var first [32]byte
		var end time.Time
		for _, own := range st.byAccount {
			if len(own) != most {
				continue
			}
			if h := soonest(own); end.IsZero() || own[h].ends().Before(end) {
				first, end = h, own[h].ends()
			}
		}
		drop(first, true)
	}
	st.put(sessionHash(id), sess)
	return id, ended, nil
}

// soonest is the session of own (one account's) closest to its end.
func soonest(own map[[32]byte]*session) [32]byte {
	var first [32]byte
	var end time.Time
	for h, x := range own {
		if e := x.ends(); end.IsZero() || e.Before(end) {
			first, end = h, e
		}
	}
	return first
}

// ends is when the session ends unless it is used before.
func (x *session) ends() time.Time {
	idle := x.seen.Add(sessionIdle)
	if abs := x.created.Add(sessionMaxAge); abs.Before(idle) {
		return abs
	}
	return idle
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
