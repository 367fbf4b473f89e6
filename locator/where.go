package locator

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// The consistency view (ilactl where, locator/where): what this node's
// datapath holds, read back from its tables, and the store revision it
// has applied.

// DatapathEntry is what a node's datapath holds for one task.
type DatapathEntry struct {
	// Domain is the task's domain (empty: the SIR prefix is in no domain
	// this node knows).
	Domain     string         `json:"domain,omitempty"`
	SIR        netip.Addr     `json:"sir"`
	Identifier ila.Identifier `json:"identifier"`
	// Locator is the mapping table's entry (0: none).
	Locator ila.Locator `json:"locator,omitzero"`
	// Local: the task is attached here and delivered locally; Suspended:
	// its delivery is stopped for a warm or cold move.
	Local     bool `json:"local,omitempty"`
	Suspended bool `json:"suspended,omitempty"`
	// InFlight is the locator packets still arriving here for the task
	// are redirected to, until InFlightUntil (0: none).
	InFlight      ila.Locator `json:"inflight,omitzero"`
	InFlightUntil time.Time   `json:"inflight_until,omitzero"`
}

// DatapathView is a node's datapath and the store revision it applied.
type DatapathView struct {
	Node string `json:"node"`
	// Role is "nve" or "router"; Mode "push" or "pull" (a pull node holds
	// only the mappings it has looked up).
	Role string `json:"role"`
	Mode string `json:"mode"`
	// Synced: the watch has listed the whole store (false during a
	// relist). Applied is the store revision the datapath has applied
	// (Stats.Applied); Revision the last one seen.
	Synced   bool  `json:"synced"`
	Applied  int64 `json:"applied_revision"`
	Revision int64 `json:"revision"`
	// Entries are sorted by SIR address.
	Entries []DatapathEntry `json:"entries"`
}

// AppliedRevision returns the store revision the datapath has applied
// (Stats.Applied), cheaply: heartbeats carry it to the mapping service.
func (a *Agent) AppliedRevision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// DatapathView reads this node's datapath back: the mapping table as the
// kernel holds it, local delivery and in-flight redirects. A valid sir
// limits it to that address (an empty Entries: the datapath holds
// nothing for it).
func (a *Agent) DatapathView(sir netip.Addr) (DatapathView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := DatapathView{Node: a.cfg.Node, Role: "nve", Mode: string(ModePush), Synced: a.synced, Applied: a.applied, Revision: a.rev, Entries: []DatapathEntry{}}
	if a.cfg.Router {
		v.Role = "router"
	}
	if a.cfg.Mode != "" {
		v.Mode = string(a.cfg.Mode)
	}
	var only key
	if sir.IsValid() {
		only = key{ila.SIRPrefixOf(sir), ila.IdentifierOf(sir)}
	}
	entries := map[key]*DatapathEntry{}
	entry := func(k key) *DatapathEntry {
		if e := entries[k]; e != nil {
			return e
		}
		e := &DatapathEntry{Domain: a.bySIR[k.sir], SIR: k.sir.Addr(k.id), Identifier: k.id}
		entries[k] = e
		return e
	}
	want := func(k key) bool { return !sir.IsValid() || k == only }
	if err := a.cfg.Datapath.Mappings(func(m ila.Mapping) bool {
		if k := (key{m.SIR, m.Identifier}); want(k) {
			entry(k).Locator = m.Locator
		}
		return true
	}); err != nil {
		return DatapathView{}, fmt.Errorf("read the datapath's mappings: %w", err)
	}
	for k, lt := range a.localByKey {
		if want(k) {
			e := entry(k)
			e.Local, e.Suspended = true, lt.suspended
		}
	}
	for k, f := range a.inflight {
		if want(k) {
			e := entry(k)
			e.InFlight, e.InFlightUntil = f.m.Locator, f.until
		}
	}
	for _, e := range entries {
		v.Entries = append(v.Entries, *e)
	}
	slices.SortFunc(v.Entries, func(x, y DatapathEntry) int { return x.SIR.Compare(y.SIR) })
	return v, nil
}

// datapathRoute serves GET /v1/datapath[?sir=ADDR] (DatapathView).
func (a *Agent) datapathRoute(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/datapath", func(w http.ResponseWriter, r *http.Request) {
		var sir netip.Addr
		if s := r.URL.Query().Get("sir"); s != "" {
			var err error
			if sir, err = netip.ParseAddr(s); err != nil || !sir.Is6() || sir.Is4In6() || sir.Zone() != "" {
				writeErr(w, http.StatusBadRequest, fmt.Errorf("sir %q: want an IPv6 address", s))
				return
			}
		}
		v, err := a.DatapathView(sir)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// Datapath reads the node's datapath back (a valid sir: that address
// only).
func (c *Client) Datapath(ctx context.Context, sir netip.Addr) (DatapathView, error) {
	path := "/v1/datapath"
	if sir.IsValid() {
		path += "?sir=" + url.QueryEscape(sir.String())
	}
	var v DatapathView
	err := c.do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}
