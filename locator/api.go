package locator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Local API of ilad (HTTP/JSON, usually on a unix socket):
//
//	GET    /v1/tasks          list local tasks ([]TaskStatus)
//	POST   /v1/tasks          attach a task (body: TaskSpec) -> TaskStatus
//	DELETE /v1/tasks/{name}   detach (deregisters the task)
//	GET    /v1/stats          agent counters (Stats)
//	GET    /v1/datapath       the datapath read back (DatapathView; ?sir=ADDR: one task)
//
// Errors come back as {"error": "..."} with 400 (bad request), 404 (no such
// task), 409 (conflicting task), 422 (refused by the mapping service).

// Handler returns the local API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Tasks())
	})
	mux.HandleFunc("POST /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		var spec TaskSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("task spec: %w", err))
			return
		}
		if err := spec.Validate(); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := a.Attach(ctx, spec); err != nil {
			var rej *RejectedError
			switch {
			case errors.Is(err, ErrExists):
				writeErr(w, http.StatusConflict, err)
			case errors.As(err, &rej):
				writeErr(w, http.StatusUnprocessableEntity, err)
			case errors.Is(err, context.DeadlineExceeded):
				// A standby attach waiting for a restored copy of the
				// task to settle: try again.
				writeErr(w, http.StatusServiceUnavailable, err)
			default:
				writeErr(w, http.StatusInternalServerError, err)
			}
			return
		}
		for _, s := range a.Tasks() {
			if s.Name == spec.Name {
				writeJSON(w, http.StatusCreated, s)
				return
			}
		}
		writeErr(w, http.StatusInternalServerError, fmt.Errorf("task %s: gone right after attach (moved away?)", spec.Name))
	})
	mux.HandleFunc("DELETE /v1/tasks/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Detach(r.Context(), r.PathValue("name")); err != nil {
			if errors.Is(err, ErrNotFound) {
				writeErr(w, http.StatusNotFound, err)
			} else {
				writeErr(w, http.StatusInternalServerError, err)
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Stats())
	})
	a.prepareRoutes(mux) // api_prepare.go
	a.datapathRoute(mux) // where.go
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Client talks to an agent's local API: ilactl, the lab, a CNI plugin or
// a hypervisor hook attach and detach tasks with it. Its errors match what
// the Agent itself returns: errors.Is(err, ErrNotFound) and ErrExists, and
// errors.As finds a *RejectedError when the mapping service refused the
// task. Every call takes a context and is bounded by a 10 s timeout.
type Client struct {
	base  string
	hc    *http.Client
	token string // bearer token (apiauth.go)
}

// APISocketDir is where ilad puts its local API socket by default.
const APISocketDir = "/run/ilad"

// DefaultAPISocket is the default local API socket of the ilad of NVE
// node: /run/ilad/<node>.sock.
func DefaultAPISocket(node string) string { return filepath.Join(APISocketDir, node+".sock") }

// NewClient returns a client for addr: a unix socket path (absolute, or
// "unix:PATH") or HOST:PORT.
func NewClient(addr string) (*Client, error) {
	if addr == "" {
		return nil, errors.New("ilad API address: empty")
	}
	path, isUnix := strings.CutPrefix(addr, "unix:")
	if !isUnix && strings.HasPrefix(addr, "/") {
		isUnix = true
	}
	if isUnix {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		return &Client{base: "http://ilad", hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("ilad API address %q: want a socket path or HOST:PORT", addr)
	}
	return &Client{base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Second}}, nil
}

// APIError is an error answer of the local API. It unwraps to the
// Agent's error for the status: ErrNotFound (404), ErrExists (409), a
// *RejectedError (422: the mapping service refused the registration),
// ErrNotPrepared (412) and ErrNoPort (424) (api_prepare.go).
type APIError struct {
	Status int
	Msg    string
	ours   bool // the body was the API's {"error": ...}
}

func (e *APIError) Error() string { return fmt.Sprintf("ilad: %s (HTTP %d)", e.Msg, e.Status) }

// Unwrap returns the Agent's error for the status, nil for others and
// for answers that did not come from the local API (an unknown path).
func (e *APIError) Unwrap() error {
	if !e.ours {
		return nil
	}
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrExists
	case http.StatusFailedDependency:
		return ErrNoPort
	case http.StatusPreconditionFailed:
		return ErrNotPrepared
	case http.StatusUnprocessableEntity:
		reason := e.Msg
		if i := strings.LastIndex(reason, rejectedPrefix); i >= 0 {
			reason = reason[i+len(rejectedPrefix):]
		}
		return &RejectedError{Reason: reason}
	}
	return nil
}

// rejectedPrefix starts the text of a RejectedError.
const rejectedPrefix = "registration rejected: "

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ilad API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("ilad API: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		ours := json.Unmarshal(b, &e) == nil && e.Error != ""
		if !ours {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error, ours: ours}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("ilad API: decode answer: %w", err)
		}
	}
	return nil
}

// Attach attaches a task.
func (c *Client) Attach(ctx context.Context, t TaskSpec) (TaskStatus, error) {
	var s TaskStatus
	err := c.do(ctx, http.MethodPost, "/v1/tasks", t, &s)
	return s, err
}

// Detach detaches a task by name.
func (c *Client) Detach(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tasks/"+url.PathEscape(name), nil, nil)
}

// Tasks lists the local tasks.
func (c *Client) Tasks(ctx context.Context) ([]TaskStatus, error) {
	var s []TaskStatus
	err := c.do(ctx, http.MethodGet, "/v1/tasks", nil, &s)
	return s, err
}

// Stats returns the agent's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.do(ctx, http.MethodGet, "/v1/stats", nil, &s)
	return s, err
}
