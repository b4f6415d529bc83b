// Package oauthtest runs a real OAuth 2.0 authorization server for tests:
// github.com/go-oauth2/oauth2/v4 with the client-credentials grant, on a
// loopback port, and a receiver guard that accepts only the bearer tokens
// it issued and that have not expired. Tests only.
package oauthtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
)

// Server is an authorization server with one client. Its token endpoint is
// TokenURL (POST, client credentials by HTTP Basic or form fields).
type Server struct {
	// TokenURL is the token endpoint.
	TokenURL string
	// HTTP is the test server (its Listener's address is the one to allow).
	HTTP *httptest.Server

	oauth   *server.Server
	manager *manage.Manager
	down    atomic.Bool
	issued  atomic.Int64
	refused atomic.Int64

	mu     sync.Mutex
	scopes []string
}

// Start runs a server with client id and secret whose access tokens live
// for ttl (expires_in is in whole seconds). It stops when the test ends.
func Start(t testing.TB, clientID, secret string, ttl time.Duration) *Server {
	t.Helper()
	m := manage.NewDefaultManager()
	m.SetClientTokenCfg(&manage.Config{AccessTokenExp: ttl})
	m.MustTokenStorage(store.NewMemoryTokenStore())
	clients := store.NewClientStore()
	if err := clients.Set(clientID, &models.Client{ID: clientID, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	m.MapClientStorage(clients)
	s := &Server{manager: m}
	srv := server.NewDefaultServer(m)
	srv.SetAllowedGrantType(oauth2.ClientCredentials)
	srv.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		if id, sec, ok := r.BasicAuth(); ok {
			return id, sec, nil
		}
		return server.ClientFormHandler(r)
	})
	srv.SetClientScopeHandler(func(tgr *oauth2.TokenGenerateRequest) (bool, error) {
		s.mu.Lock()
		s.scopes = append(s.scopes, tgr.Scope)
		s.mu.Unlock()
		return true, nil
	})
	s.oauth = srv
	s.HTTP = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			http.NotFound(w, r)
			return
		}
		if s.down.Load() {
			http.Error(w, "token service down", http.StatusServiceUnavailable)
			return
		}
		rec := httptest.NewRecorder()
		if err := srv.HandleTokenRequest(rec, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if rec.Code == http.StatusOK {
			s.issued.Add(1)
		} else {
			s.refused.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	s.TokenURL = s.HTTP.URL + "/token"
	t.Cleanup(s.HTTP.Close)
	return s
}

// SetDown makes the token endpoint answer 503 (true) or work again.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// Issued is how many access tokens the server issued; Refused how many
// token requests it refused (wrong credentials and other errors).
func (s *Server) Issued() int64  { return s.issued.Load() }
func (s *Server) Refused() int64 { return s.refused.Load() }

// Scopes are the scope parameters of the token requests, in order ("" for
// none).
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scopes...)
}

// Authorized reports whether r carries a bearer token the server issued
// that has not expired.
func (s *Server) Authorized(r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return false
	}
	_, err := s.oauth.ValidationBearerToken(r)
	return err == nil
}

// Revoke makes a token the server issued invalid before it expires.
func (s *Server) Revoke(token string) error {
	return s.manager.RemoveAccessToken(context.Background(), token)
}

// Protect wraps h: requests without a valid bearer token get 401 (with
// WWW-Authenticate, as RFC 6750 has it) and never reach h.
func (s *Server) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.Authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
