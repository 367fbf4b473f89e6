package mapsrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// API request bodies. Addresses, locators, MACs and durations are text.

// RegisterBody is the body of POST /v1/tasks.
type RegisterBody struct {
	NVE      string       `json:"nve"`
	Locator  ila.Locator  `json:"locator,omitzero"`
	Domain   string       `json:"domain,omitempty"`
	Tenant   string       `json:"tenant,omitempty"`
	Name     string       `json:"name"`
	SIR      netip.Addr   `json:"sir,omitzero"`
	IPv4     netip.Addr   `json:"ipv4,omitzero"`
	VNI      uint32       `json:"vni,omitempty"`
	MAC      ila.MAC      `json:"mac,omitzero"`
	Lifetime ila.Duration `json:"lifetime,omitzero"` // 0: does not expire
	Mode     ila.MoveMode `json:"mode,omitempty"`
}

// MoveBody is the body of POST /v1/tasks/{tenant}/{name}/move.
type MoveBody struct {
	To      string       `json:"to"`
	Mode    ila.MoveMode `json:"mode,omitempty"` // hot (default), warm, cold
	Locator ila.Locator  `json:"locator,omitzero"`
	// Check: only say whether the move would be accepted now (200 with
	// the record as it would be, or the refusal); nothing changes.
	Check bool `json:"check,omitempty"`
}

// ExpectBody is the body of POST /v1/tasks/{tenant}/{name}/expect: the
// orchestrator announces that the task is about to move to NVE (a live
// migration; expect.go).
type ExpectBody struct {
	NVE string       `json:"nve"`
	TTL ila.Duration `json:"ttl,omitzero"` // 0: DefaultExpectTTL (1m); at most mapsrv --max-expect-ttl (10m)
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"` // invalid, unauthorized, not_found, conflict, duplicate, forbidden, unavailable
}

// VersionBody is the answer of GET /v1/version.
type VersionBody struct {
	Version string `json:"version"` // mapsrv's version ("devel" when not set)
	Go      string `json:"go"`      // the Go version it was built with
}

// APIOptions configures the management API handler.
type APIOptions struct {
	// Watch streams the mapping for GET /v1/watch (the etcdstore
	// Watcher's Watch). Nil: the endpoint answers 501.
	Watch func(ctx context.Context, fn func(ila.Event)) error
	// Version is reported by GET /v1/version.
	Version string
	// Health, if set, is called by GET /v1/health; an error makes it 503.
	Health func(ctx context.Context) error
	// Tokens, if not empty, are the bearer tokens the API accepts
	// ("Authorization: Bearer TOKEN"; see ReadTokenFile): every endpoint
	// but GET /v1/health and GET /v1/version answers 401 without one.
	Tokens []string
	// ReadOnlyTokens are accepted for GET requests only (RoleReadOnly):
	// anything else answers 403.
	ReadOnlyTokens []string
	// Audit, if set, is called once for every request that may change
	// something (any method but GET and HEAD), accepted or not, after it
	// was answered: the audit log of the management API.
	Audit func(AuditRecord)
}

// NewAPI returns the HTTP/JSON management API of svc:
//
//	GET    /v1/health                                  {"status":"ok"}
//	GET    /v1/version                                 VersionBody
//	GET    /v1/domains                                 [ila.Domain]
//	POST   /v1/domains            ila.Domain           201 ila.Domain
//	GET    /v1/nves                                    [NVERecord]
//	GET    /v1/nves/{name}                             NVERecord
//	POST   /v1/nves               NVERecord            201 NVERecord
//	GET    /v1/tasks                                   [TaskRecord]
//	POST   /v1/tasks              RegisterBody         200 TaskRecord
//	GET    /v1/tasks/{tenant}/{name}                   TaskRecord
//	DELETE /v1/tasks/{tenant}/{name}                   204
//	POST   /v1/tasks/{tenant}/{name}/move    MoveBody  200 TaskRecord
//	POST   /v1/tasks/{tenant}/{name}/clear-duplicate   200 TaskRecord
//	POST   /v1/tasks/{tenant}/{name}/expect  ExpectBody 200 TaskRecord
//	DELETE /v1/tasks/{tenant}/{name}/expect            204
//	GET    /v1/mappings/{domain}/{identifier}          TaskRecord
//	DELETE /v1/mappings/{domain}/{identifier}          204 (tasks without a name)
//	GET    /v1/watch                                   JSON lines of ila.Event
//	POST   /v1/allocations        AllocRequest         201 (new) or 200 AllocBody
//	GET    /v1/allocations/{tenant}/{name}             Allocation
//	DELETE /v1/allocations/{tenant}/{name}             204
//	GET    /v1/policies                                [ila.Policy]
//	POST   /v1/policies           PolicyBody           201 ila.Policy
//	DELETE /v1/policies/{tenant}/{tenant}              204
//
// Errors are ErrorBody with 400 (invalid), 401 (unauthorized: a token is
// required and none or a wrong one was given), 403 (forbidden), 404 (not
// found), 409 (conflict, duplicate), 503 (store unavailable).
func NewAPI(svc *Service, opts APIOptions) http.Handler {
	a := &api{svc: svc, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", a.health)
	mux.HandleFunc("GET /v1/version", a.version)
	mux.HandleFunc("GET /v1/domains", a.listDomains)
	mux.HandleFunc("POST /v1/domains", a.addDomain)
	mux.HandleFunc("GET /v1/nves", a.listNVEs)
	mux.HandleFunc("GET /v1/nves/{name}", a.getNVE)
	mux.HandleFunc("GET /v1/status/nves", a.nveStatuses) // applied.go
	mux.HandleFunc("POST /v1/nves", a.addNVE)
	mux.HandleFunc("GET /v1/tasks", a.listTasks)
	mux.HandleFunc("POST /v1/tasks", a.register)
	mux.HandleFunc("GET /v1/tasks/{tenant}/{name}", a.getTask)
	mux.HandleFunc("DELETE /v1/tasks/{tenant}/{name}", a.deregister)
	mux.HandleFunc("POST /v1/tasks/{tenant}/{name}/move", a.move)
	mux.HandleFunc("POST /v1/tasks/{tenant}/{name}/clear-duplicate", a.clearDuplicate)
	mux.HandleFunc("POST /v1/tasks/{tenant}/{name}/expect", a.expect) // expect.go
	mux.HandleFunc("DELETE /v1/tasks/{tenant}/{name}/expect", a.unexpect)
	mux.HandleFunc("GET /v1/mappings/{domain}/{identifier}", a.getMapping)
	mux.HandleFunc("DELETE /v1/mappings/{domain}/{identifier}", a.deleteMapping)
	mux.HandleFunc("GET /v1/watch", a.watch)
	a.allocRoutes(mux) // alloc_api.go
	mux.HandleFunc("GET /v1/policies", a.listPolicies)
	mux.HandleFunc("POST /v1/policies", a.addPolicy)
	mux.HandleFunc("DELETE /v1/policies/{a}/{b}", a.deletePolicy)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	var h http.Handler = mux
	if len(opts.Tokens)+len(opts.ReadOnlyTokens) > 0 {
		h = requireToken(mux, opts.Tokens, opts.ReadOnlyTokens)
	}
	return audit(h, opts.Audit)
}

type api struct {
	svc  *Service
	opts APIOptions
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}

// fail writes err with the status its kind calls for.
func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, ErrNotFound):
		writeErr(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrDuplicate):
		writeErr(w, http.StatusConflict, "duplicate", err.Error())
	case errors.Is(err, ErrConflict):
		writeErr(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrForbidden):
		writeErr(w, http.StatusForbidden, "forbidden", err.Error())
	default:
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}

// decode reads a JSON body into v, refusing unknown fields.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", fmt.Sprintf("request body: %v", err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeErr(w, http.StatusBadRequest, "invalid", "request body: trailing data after the JSON value")
		return false
	}
	return true
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	if a.opts.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := a.opts.Health(ctx); err != nil {
			writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *api) version(w http.ResponseWriter, _ *http.Request) {
	v := a.opts.Version
	if v == "" {
		v = "devel"
	}
	writeJSON(w, http.StatusOK, VersionBody{Version: v, Go: runtime.Version()})
}

func (a *api) listDomains(w http.ResponseWriter, r *http.Request) {
	ds, err := a.svc.Domains(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ds))
}

func (a *api) addDomain(w http.ResponseWriter, r *http.Request) {
	var d ila.Domain
	if !decode(w, r, &d) {
		return
	}
	if err := a.svc.AddDomain(r.Context(), d); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, d)
}

func (a *api) listNVEs(w http.ResponseWriter, r *http.Request) {
	ns, err := a.svc.NVEs(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	for i := range ns {
		ns[i] = a.svc.withLastHeard(ns[i])
	}
	writeJSON(w, http.StatusOK, nonNil(ns))
}

func (a *api) getNVE(w http.ResponseWriter, r *http.Request) {
	n, err := a.svc.NVE(r.Context(), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.svc.withLastHeard(n))
}

func (a *api) addNVE(w http.ResponseWriter, r *http.Request) {
	var n NVERecord
	if !decode(w, r, &n) {
		return
	}
	if err := a.svc.AddNVE(r.Context(), n); err != nil {
		fail(w, err)
		return
	}
	n, err := a.svc.NVE(r.Context(), n.Name)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, n)
}

func (a *api) listTasks(w http.ResponseWriter, r *http.Request) {
	ts, err := a.svc.Tasks(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ts))
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	var b RegisterBody
	if !decode(w, r, &b) {
		return
	}
	rec, err := a.svc.Register(r.Context(), Registration{
		NVE: b.NVE, Locator: b.Locator, Domain: b.Domain, Tenant: b.Tenant, Name: b.Name,
		SIR: b.SIR, IPv4: b.IPv4, VNI: b.VNI, MAC: b.MAC, Lifetime: time.Duration(b.Lifetime), Mode: b.Mode,
		NoRename: true,
	})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *api) getTask(w http.ResponseWriter, r *http.Request) {
	rec, err := a.svc.Task(r.Context(), r.PathValue("tenant"), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *api) getMapping(w http.ResponseWriter, r *http.Request) {
	id, err := ila.ParseIdentifier(r.PathValue("identifier"))
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	rec, err := a.svc.TaskByID(r.Context(), r.PathValue("domain"), id)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *api) deleteMapping(w http.ResponseWriter, r *http.Request) {
	id, err := ila.ParseIdentifier(r.PathValue("identifier"))
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	if err := a.svc.Deregister(r.Context(), DeregisterRequest{Domain: r.PathValue("domain"), Identifier: id}); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) deregister(w http.ResponseWriter, r *http.Request) {
	err := a.svc.Deregister(r.Context(), DeregisterRequest{Tenant: r.PathValue("tenant"), Name: r.PathValue("name")})
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) move(w http.ResponseWriter, r *http.Request) {
	var b MoveBody
	if !decode(w, r, &b) {
		return
	}
	rec, err := a.svc.Move(r.Context(), MoveRequest{Tenant: r.PathValue("tenant"), Name: r.PathValue("name"), To: b.To, Mode: b.Mode, Locator: b.Locator, Check: b.Check})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *api) clearDuplicate(w http.ResponseWriter, r *http.Request) {
	rec, err := a.svc.ClearDuplicate(r.Context(), r.PathValue("tenant"), r.PathValue("name"), "", 0)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// watch streams ila.Event values as JSON lines until the client goes away.
func (a *api) watch(w http.ResponseWriter, r *http.Request) {
	if a.opts.Watch == nil {
		writeErr(w, http.StatusNotImplemented, "unavailable", "no watch source configured")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	_ = a.opts.Watch(ctx, func(ev ila.Event) {
		if ctx.Err() != nil {
			return
		}
		if err := enc.Encode(ev); err != nil {
			cancel()
			return
		}
		if err := rc.Flush(); err != nil {
			cancel()
		}
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
