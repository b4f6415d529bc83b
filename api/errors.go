package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Error codes of the API. Each maps to one HTTP status in codeStatus.
const (
	EInvalid      = "invalid"      // a bad parameter or body: 400
	EUnauthorized = "unauthorized" // no key, or not a valid one: 401
	EForbidden    = "forbidden"    // the key lacks the route's scope: 403
	ENotFound     = "not_found"    // no such route: 404
	EMethod       = "method"       // the route exists, the method does not: 405
	ETooLarge     = "too_large"    // the request body is over the limit: 413
	ERateLimited  = "rate_limited" // the key is over its rate limit: 429
	EInternal     = "internal"     // anything else: 500, logged, never shown
	EUnavailable  = "unavailable"  // busy, a store is unreachable or a part is not configured: 503
	EBadGateway   = "bad_gateway"  // a receiver bouncer called for the caller failed (the webhook test): 502
)

var codeStatus = map[string]int{
	EInvalid:      http.StatusBadRequest,
	EUnauthorized: http.StatusUnauthorized,
	EForbidden:    http.StatusForbidden,
	ENotFound:     http.StatusNotFound,
	EMethod:       http.StatusMethodNotAllowed,
	ETooLarge:     http.StatusRequestEntityTooLarge,
	ERateLimited:  http.StatusTooManyRequests,
	EInternal:     http.StatusInternalServerError,
	EUnavailable:  http.StatusServiceUnavailable,
	EBadGateway:   http.StatusBadGateway,
}

// Error is the API's one error type: a code, the field at fault (if any)
// and a message safe to show the caller.
type Error struct {
	Code    string
	Field   string
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// cause, when set, is logged (never shown) with the answer.
	cause error
}

func (e *Error) Unwrap() error { return e.cause }

// storeRetryAfter is the Retry-After of an answer to a request whose store
// could not be reached.
const storeRetryAfter = 5 * time.Second

// unavailable reports whether err means a store could not be reached now,
// rather than a mistake in the request or the code: a network error (refused,
// reset, a timeout), a connection closed in the middle of an answer, a
// deadline, an error that says it is temporary (kafka-go's) or one that
// says Unavailable() (a store's own word, e.g. a full connection pool).
func unavailable(err error) bool {
	var ne net.Error
	var tmp interface{ Temporary() bool }
	var un interface{ Unavailable() bool }
	switch {
	case errors.As(err, &ne),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &un):
		return un.Unavailable()
	case errors.As(err, &tmp):
		return tmp.Temporary()
	}
	return false
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return e.Code + ": " + e.Message
}

func errorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// errorBody is SendGrid's error shape: {"errors":[{"field":null,"message":"..."}]}.
type errorBody struct {
	Errors []errorItem `json:"errors"`
}

type errorItem struct {
	Field   *string `json:"field"`
	Message string  `json:"message"`
}

// writeError answers with err in SendGrid's shape. Errors that are not an
// *Error are logged; a store that cannot be reached (unavailable, or the
// server's Config.Unavailable) is 503 with Retry-After, anything else is
// internal and shown only as "internal error".
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		if e.cause != nil {
			log.Warn("request refused", "method", r.Method, "route", r.Pattern, "code", e.Code, "err", e.cause)
		}
	case unavailable(err) || info(r.Context()).unavailable(err):
		log.Warn("store unavailable", "method", r.Method, "route", r.Pattern, "err", err)
		e = &Error{Code: EUnavailable, RetryAfter: storeRetryAfter,
			Message: "the service cannot reach its database right now: retry after the Retry-After seconds"}
	default:
		log.Error("request failed", "method", r.Method, "route", r.Pattern, "err", err)
		e = &Error{Code: EInternal, Message: "internal error"}
	}
	status, ok := codeStatus[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if info(r.Context()).legacy {
		writeJSON(w, status, legacyError{Message: "error", Errors: []string{e.Message}})
		return
	}
	item := errorItem{Message: e.Message}
	if e.Field != "" {
		f := e.Field
		item.Field = &f
	}
	writeJSON(w, status, errorBody{Errors: []errorItem{item}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"errors":[{"field":null,"message":"internal error"}]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
