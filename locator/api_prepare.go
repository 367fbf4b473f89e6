package locator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The prepare/commit part of the local API:
//
//	GET  /v1/tasks/{name}           one task (prepared, active or moved) -> TaskStatus
//	POST /v1/tasks/{name}/prepare   prepare (body: TaskSpec) -> TaskStatus
//	POST /v1/tasks/{name}/commit    commit a prepared task -> TaskStatus
//	POST /v1/tasks/{name}/abort     drop a prepared task, or a committed one
//	                                whose claim was not accepted (mapping untouched)
//	POST /v1/tasks/{name}/handover  at the source: redirect to the destination
//	                                when the guest stops (body: HandoverSpec)
//
// 404: no such task (commit of a task never prepared), 409: a conflicting
// task at prepare, 412: abort of a task that is not prepared (active), 424:
// the task's interface does not exist (yet). The Client's errors unwrap to
// ErrNotFound, ErrExists, ErrNotPrepared and ErrNoPort.

func (a *Agent) prepareRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/tasks/{name}", func(w http.ResponseWriter, r *http.Request) {
		if s, ok := a.Task(r.PathValue("name")); ok {
			writeJSON(w, http.StatusOK, s)
			return
		}
		writeErr(w, http.StatusNotFound, fmt.Errorf("task %s: %w", r.PathValue("name"), ErrNotFound))
	})
	mux.HandleFunc("POST /v1/tasks/{name}/prepare", func(w http.ResponseWriter, r *http.Request) {
		var spec TaskSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("task spec: %w", err))
			return
		}
		if spec.Name != r.PathValue("name") {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("task spec names %q, the path %q", spec.Name, r.PathValue("name")))
			return
		}
		if err := spec.Validate(); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := a.Prepare(ctx, spec); err != nil {
			switch {
			case errors.Is(err, ErrExists):
				writeErr(w, http.StatusConflict, err)
			case errors.Is(err, ErrNoPort):
				writeErr(w, http.StatusFailedDependency, err)
			default:
				writeErr(w, http.StatusInternalServerError, err)
			}
			return
		}
		a.writeTask(w, http.StatusCreated, spec.Name)
	})
	mux.HandleFunc("POST /v1/tasks/{name}/commit", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := a.Commit(ctx, r.PathValue("name")); err != nil {
			var rej *RejectedError
			switch {
			case errors.Is(err, ErrNotFound):
				writeErr(w, http.StatusNotFound, err)
			case errors.As(err, &rej):
				writeErr(w, http.StatusUnprocessableEntity, err)
			default:
				writeErr(w, http.StatusInternalServerError, err)
			}
			return
		}
		a.writeTask(w, http.StatusOK, r.PathValue("name"))
	})
	mux.HandleFunc("POST /v1/tasks/{name}/handover", func(w http.ResponseWriter, r *http.Request) {
		var h HandoverSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("handover: %w", err))
			return
		}
		if err := a.Handover(r.Context(), r.PathValue("name"), h); err != nil {
			switch {
			case errors.Is(err, ErrNotFound):
				writeErr(w, http.StatusNotFound, err)
			case errors.Is(err, ErrNotActive):
				writeErr(w, http.StatusConflict, err)
			default:
				writeErr(w, http.StatusBadRequest, err)
			}
			return
		}
		a.writeTask(w, http.StatusOK, r.PathValue("name"))
	})
	mux.HandleFunc("POST /v1/tasks/{name}/abort", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Abort(r.Context(), r.PathValue("name")); err != nil {
			switch {
			case errors.Is(err, ErrNotFound):
				writeErr(w, http.StatusNotFound, err)
			case errors.Is(err, ErrNotPrepared):
				writeErr(w, http.StatusPreconditionFailed, err)
			default:
				writeErr(w, http.StatusInternalServerError, err)
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *Agent) writeTask(w http.ResponseWriter, code int, name string) {
	if s, ok := a.Task(name); ok {
		writeJSON(w, code, s)
		return
	}
	writeErr(w, http.StatusInternalServerError, fmt.Errorf("task %s: gone right after the request (moved away?)", name))
}

// Task returns one task's status: local (prepared or active) or moved
// away.
func (a *Agent) Task(name string) (TaskStatus, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if lt := a.locals[name]; lt != nil {
		return a.statusOf(lt), true
	}
	if m, ok := a.moved[name]; ok {
		return m.status, true
	}
	return TaskStatus{}, false
}

// Task returns one task's status.
func (c *Client) Task(ctx context.Context, name string) (TaskStatus, error) {
	var s TaskStatus
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(name), nil, &s)
	return s, err
}

// Prepare prepares a task (see Agent.Prepare).
func (c *Client) Prepare(ctx context.Context, t TaskSpec) (TaskStatus, error) {
	var s TaskStatus
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(t.Name)+"/prepare", t, &s)
	return s, err
}

// Commit commits a prepared task.
func (c *Client) Commit(ctx context.Context, name string) (TaskStatus, error) {
	var s TaskStatus
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(name)+"/commit", nil, &s)
	return s, err
}

// Abort drops a prepared task.
func (c *Client) Abort(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(name)+"/abort", nil, nil)
}

// Handover arms the early redirect of a migrating task at its source (see
// Agent.Handover).
func (c *Client) Handover(ctx context.Context, name string, h HandoverSpec) (TaskStatus, error) {
	var s TaskStatus
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(name)+"/handover", h, &s)
	return s, err
}
