package api

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// queryGate bounds the statistics queries running at once: at most total
// in the process and perAccount for one account, so the memory they hold is
// bounded however many requests arrive, and one account cannot take every
// place. A request waits for its place at most maxWait (or until it is
// cancelled); then it is 429 when its account's places were taken and 503
// when the process's were, both with Retry-After.
type queryGate struct {
	all        chan struct{}
	perAccount int
	maxWait    time.Duration

	mu       sync.Mutex
	accounts map[string]*accountPlaces
}

// accountPlaces are one account's places; users counts the requests that
// hold or wait for one, so the entry goes when the last one leaves.
type accountPlaces struct {
	places chan struct{}
	users  int
}

func newQueryGate(total, perAccount int, maxWait time.Duration) *queryGate {
	return &queryGate{all: make(chan struct{}, total), perAccount: perAccount, maxWait: maxWait, accounts: map[string]*accountPlaces{}}
}

// enter waits for a place for account; leave gives it back.
func (g *queryGate) enter(ctx context.Context, account string) (leave func(), err error) {
	g.mu.Lock()
	a := g.accounts[account]
	if a == nil {
		a = &accountPlaces{places: make(chan struct{}, g.perAccount)}
		g.accounts[account] = a
	}
	a.users++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if a.users--; a.users == 0 {
			delete(g.accounts, account)
		}
		g.mu.Unlock()
	}
	timer := time.NewTimer(g.maxWait)
	defer timer.Stop()
	select {
	case a.places <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	case <-timer.C:
		done()
		return nil, &Error{Code: ERateLimited, RetryAfter: time.Second,
			Message: "this account's statistics queries are all busy: wait for one to finish and retry"}
	}
	select {
	case g.all <- struct{}{}:
	case <-ctx.Done():
		<-a.places
		done()
		return nil, ctx.Err()
	case <-timer.C:
		<-a.places
		done()
		return nil, &Error{Code: EUnavailable, RetryAfter: time.Second,
			Message: "the server is answering as many statistics queries as it may at once: retry in a moment"}
	}
	return func() {
		<-g.all
		<-a.places
		done()
	}, nil
}

// gated runs next only with a place of s.queries: the statistics routes,
// whose answers are the largest.
func (s *server) gated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leave, err := s.queries.enter(r.Context(), account(r))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		defer leave()
		next.ServeHTTP(w, r)
	})
}
