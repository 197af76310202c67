package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/ratelimit/httplimit"
)

// reqState is the mutable per-request record shared by the middleware: the
// outer ones create it, inner ones fill it. The mux sets r.Pattern only on
// its own copy of the request, so capturePattern (the first wrapper inside
// the mux) copies it here for the access log and the metrics.
type reqState struct {
	rec     *recorder
	pattern string // route pattern the mux matched; "" if none
	userID  string // authenticated user, if any
	// requestID backs the X-Request-ID field of the response, so that
	// setting it allocates no slice.
	requestID [1]string
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// recorder records the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recoverer is the outermost middleware: it creates the per-request record
// and turns a panic into a logged 500 problem (if nothing was written yet).
// http.ErrAbortHandler is re-panicked so net/http aborts the response.
func recoverer(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w}
			st := &reqState{rec: rec}
			r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.LogAttrs(r.Context(), slog.LevelError, "panic",
					slog.String("request_id", w.Header().Get("X-Request-ID")),
					slog.String("route", st.pattern),
					slog.String("panic", fmt.Sprint(p)),
					slog.String("stack", string(debug.Stack())))
				if rec.status == 0 {
					writeProblem(rec, r, problem{
						Type: "about:blank", Title: http.StatusText(http.StatusInternalServerError),
						Status: http.StatusInternalServerError, Detail: "internal server error",
					})
				}
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// requestID keeps the client's X-Request-ID when it is 1-128 characters of
// [A-Za-z0-9._-], else makes a new one; it sets it and X-Instance on the
// response and the request ID in the context (journal.WithRequestID).
func requestID(instance string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		instanceVal := []string{instance}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var id string
			if v := r.Header[keyRequestID]; len(v) > 0 {
				id = v[0]
			}
			if !validRequestID(id) {
				id = newRequestID()
			}
			h := w.Header()
			if st := stateFrom(r.Context()); st != nil {
				st.requestID[0] = id
				h[keyRequestID] = st.requestID[:]
			} else {
				h[keyRequestID] = []string{id}
			}
			h[keyInstance] = instanceVal
			next.ServeHTTP(w, r.WithContext(journal.WithRequestID(r.Context(), id)))
		})
	}
}

func validRequestID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes as 22 characters of base64url.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error.
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// accessLog writes one JSON line per request and records the request
// metrics. It logs even when the handler panics (status 500, as recoverer
// then answers). It never logs headers, query strings or bodies. With
// startSpan, the request runs in its trace span, ended with the status that
// is logged, and the line carries the trace id.
func accessLog(logger *slog.Logger, instance string, m *metrics, startSpan func(*http.Request) (context.Context, string, func(string, int))) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			st := stateFrom(r.Context())
			ctx := r.Context()
			traceID, endSpan := "", func(string, int) {}
			if startSpan != nil {
				ctx, traceID, endSpan = startSpan(r)
			}
			r = r.WithContext(httplimit.WithOutcome(ctx))
			completed := false
			defer func() {
				d := time.Since(start)
				status := st.rec.status
				if !completed && status == 0 {
					status = http.StatusInternalServerError
				} else if status == 0 {
					status = http.StatusOK // nothing written: net/http sends 200
				}
				route := st.pattern
				label := route
				if label == "" {
					label = "unmatched"
				}
				m.observe(label, status, d)
				endSpan(route, status)
				attrs := make([]slog.Attr, 0, 12)
				attrs = append(attrs,
					slog.String("request_id", journal.RequestIDFromContext(r.Context())),
					slog.String("method", r.Method),
					slog.String("route", route),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000),
					slog.Int64("bytes", st.rec.bytes),
					slog.String("instance", instance),
				)
				if st.userID != "" {
					attrs = append(attrs, slog.String("user_id", st.userID))
				}
				if traceID != "" {
					attrs = append(attrs, slog.String("trace_id", traceID))
				}
				if o := httplimit.OutcomeFromContext(r.Context()); o != httplimit.OutcomeNone {
					attrs = append(attrs, slog.String("ratelimit", o.String()))
				}
				if !completed {
					attrs = append(attrs, slog.Bool("panic", true))
				}
				logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			}()
			next.ServeHTTP(w, r)
			completed = true
		})
	}
}

// capturePattern is the first wrapper inside the mux: it copies r.Pattern,
// which the mux set on its request, into the per-request record.
func capturePattern(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateFrom(r.Context()); st != nil {
			st.pattern = r.Pattern
		}
		next.ServeHTTP(w, r)
	})
}

type tokenHashKey struct{}

// tokenHashFrom returns the hash of the bearer token that authenticated the
// request.
func tokenHashFrom(ctx context.Context) string {
	h, _ := ctx.Value(tokenHashKey{}).(string)
	return h
}

// authenticate requires a valid bearer token: "Authorization: Bearer
// <token>". Missing, malformed, unknown, expired or revoked tokens get 401
// with WWW-Authenticate: Bearer. It costs one TokenByHash. On success the
// context carries journal.User{ID: token.UserID} (only the ID) and the
// response is marked per-user (Cache-Control: private, no-cache).
func authenticate(tokens journal.TokenStore, logger *slog.Logger, now func() time.Time) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			addVaryAuthorization(w.Header())
			secret, ok := bearerToken(r)
			if !ok {
				writeError(w, r, logger, errNoToken)
				return
			}
			hash := journal.HashToken(secret)
			tok, err := tokens.TokenByHash(r.Context(), hash)
			switch {
			case err == nil && !tok.Valid(now()):
				err = errBadToken
			case err == nil:
			case isNotFound(err):
				err = errBadToken
			}
			if err != nil {
				writeError(w, r, logger, err)
				return
			}
			if st := stateFrom(r.Context()); st != nil {
				st.userID = tok.UserID
			}
			w.Header()[keyCacheControl] = valPrivateNoCache
			ctx := journal.WithUser(r.Context(), journal.User{ID: tok.UserID})
			ctx = context.WithValue(ctx, tokenHashKey{}, hash)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// bearerToken returns the token of the single Authorization header if it is
// "Bearer <token>" (scheme case-insensitive) with a well-formed token.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if !journal.WellFormedTokenSecret(tok) {
		return "", false
	}
	return tok, true
}

// problemMux serves mux and answers the mux's own 404 and 405 (no route
// matched; 405 keeps its Allow header) with problem+json through
// notFound and notAllowed instead of the mux's plain text.
func problemMux(mux *http.ServeMux, notFound, notAllowed http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw := &interceptWriter{ResponseWriter: w, r: r, st: stateFrom(r.Context()), notFound: notFound, notAllowed: notAllowed}
		mux.ServeHTTP(iw, r)
	})
}

type interceptWriter struct {
	http.ResponseWriter
	r                    *http.Request
	st                   *reqState
	notFound, notAllowed http.Handler
	decided, swallow     bool
}

func (w *interceptWriter) WriteHeader(code int) {
	if !w.decided && code >= 200 {
		w.decided = true
		if (w.st == nil || w.st.pattern == "") && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
			w.swallow = true
			h := w.ResponseWriter.Header()
			h.Del("Content-Type")
			h.Del("X-Content-Type-Options")
			if code == http.StatusNotFound {
				w.notFound.ServeHTTP(w.ResponseWriter, w.r)
			} else {
				w.notAllowed.ServeHTTP(w.ResponseWriter, w.r)
			}
			return
		}
	}
	if !w.swallow {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *interceptWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *interceptWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
