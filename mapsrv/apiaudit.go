package mapsrv

import (
	"context"
	"net/http"
	"time"
)

// AuditRecord describes one request to the management API that may change
// something (any method but GET and HEAD).
type AuditRecord struct {
	Time   time.Time
	Remote string // the client's address
	Method string
	Path   string
	Status int    // HTTP status of the answer
	Role   string // RoleAdmin, RoleReadOnly, or "" (no token given or accepted; no tokens configured)
	Token  string // the token's id (first 8 bytes of its SHA-256, hex); "" without one
	Took   time.Duration
}

type callerKey struct{}

// caller is filled in by requireToken for the audit log.
type caller struct{ role, token string }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the watch stream through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// audit reports every request but GET and HEAD to fn once answered.
func audit(next http.Handler, fn func(AuditRecord)) http.Handler {
	if fn == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		c := &caller{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		fn(AuditRecord{Time: start, Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path,
			Status: sw.status, Role: c.role, Token: c.token, Took: time.Since(start)})
	})
}
