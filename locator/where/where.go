// Package where is the consistency view of an ILA deployment: for one task
// or all of them, the locator every NVE's and ILA router's datapath holds,
// the store revision each has applied, and whether that matches the store.
// `ilactl where` prints it; the lab's chaos suite checks "every datapath
// equals the store" with it.
//
// Use:
//
//	nodes := where.NVEs(where.SocketPattern("/run/ilad/{nve}.sock"))  // how to reach each NVE's ilad
//	rep, err := where.Check(ctx, api, nodes, where.Query{})         // api: *apiclient.Client or an etcdstore.Watcher
//	if !rep.Consistent { ... rep.Problems() ... }
//
// or where.Converge, which checks again until the report is consistent
// (datapaths still applying a change are "behind", not wrong) or ctx ends.
//
// In the lab (deploy/lab) the NVEs' local APIs are the sockets
// <state-dir>/ilad-<nve>.sock and the ILA router's
// <state-dir>/ilad-router.sock (ilad-router-<dc> for the other data
// centres of --dcs); the store is the lab's mapsrv API client (or an
// etcdstore.Watcher over the read-only etcd user):
//
//	rc, _ := locator.NewClient(filepath.Join(stateDir, "ilad-router.sock"))
//	nodes := where.NVEs(where.SocketPattern(filepath.Join(stateDir, "ilad-{nve}.sock")),
//		where.Node{Name: "router", Agent: rc})
//	rep, err := where.Converge(ctx, api, nodes, where.Query{}, 100*time.Millisecond)
//	// err != nil: not equal within ctx; rep.Problems() says where.
//
// An NVE that is down (its ilad killed) is StatusUnreachable: leave it
// out of nodes, or expect it in the report.
//
// Check asks the agents first and reads the store after, so that a change
// committed in between shows as "behind" (the node has not applied the
// task's revision yet) rather than "wrong".
package where

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
)

// Store is where the truth is read: a mapping watch that lists everything
// (each record with the revision of its last change), then
// ila.EventSynced. *apiclient.Client (mapsrv's API) and
// *etcdstore.Watcher (etcd, read-only) are Stores.
type Store interface {
	Watch(ctx context.Context, fn func(ila.Event)) error
}

// Agent reads one node's datapath back; *locator.Client is one.
type Agent interface {
	Datapath(ctx context.Context, sir netip.Addr) (locator.DatapathView, error)
}

// Node is one node to ask.
type Node struct {
	Name string
	// Agent reaches its ilad; nil with Err set: it cannot be reached.
	Agent Agent
	Err   error
}

// Nodes says which nodes to ask, given the NVEs of the store.
type Nodes func(nves []ila.NVE) []Node

// Reach returns the agent of an NVE.
type Reach func(nve ila.NVE) (Agent, error)

// NVEs asks every NVE of the store, reached with reach, and the routers
// (ILA routers are not in the store).
func NVEs(reach Reach, routers ...Node) Nodes {
	return func(nves []ila.NVE) []Node {
		var out []Node
		for _, n := range nves {
			a, err := reach(n)
			out = append(out, Node{Name: n.Name, Agent: a, Err: err})
		}
		return append(out, routers...)
	}
}

// SocketPattern reaches each NVE's ilad at pattern with "{nve}" replaced
// by the NVE's name: a unix socket path ("/run/ilad/{nve}.sock", ilad's
// default) or HOST:PORT.
func SocketPattern(pattern string) Reach {
	return func(n ila.NVE) (Agent, error) {
		return locator.NewClient(strings.ReplaceAll(pattern, "{nve}", n.Name))
	}
}

// Addresses reaches the NVEs named in addrs (name -> socket path or
// HOST:PORT) there, and the others with fallback (nil: they are
// reported unreachable).
func Addresses(addrs map[string]string, fallback Reach) Reach {
	return func(n ila.NVE) (Agent, error) {
		if a, ok := addrs[n.Name]; ok {
			return locator.NewClient(a)
		}
		if fallback == nil {
			return nil, fmt.Errorf("nve %s: no local API address given", n.Name)
		}
		return fallback(n)
	}
}

// Query selects the tasks: by SIR address, else by name (and tenant:
// empty is any), else all.
type Query struct {
	SIR          netip.Addr
	Tenant, Name string
}

func (q Query) all() bool { return !q.SIR.IsValid() && q.Name == "" }

func (q Query) match(t ila.Task) bool {
	switch {
	case q.SIR.IsValid():
		return t.SIR == q.SIR
	case q.Name != "":
		return t.Name == q.Name && (q.Tenant == "" || t.Tenant == q.Tenant)
	}
	return true
}

// Status of one node for one task.
type Status string

// Statuses. Only StatusOK and StatusBehind are consistent: a node that is
// behind has not applied the task's last change yet (Converge waits for
// it).
const (
	// StatusOK: the datapath holds what the store says (no entry for a
	// suspended task; a pull-mode node may hold none).
	StatusOK Status = "ok"
	// StatusBehind: it differs, and the node has not applied the
	// revision of the task's last change yet.
	StatusBehind Status = "behind"
	// StatusWrong: it differs although the node has applied that
	// revision (or, for an entry the store does not have, the store's
	// revision): the datapath is inconsistent.
	StatusWrong Status = "wrong"
	// StatusUnreachable: the node's ilad did not answer.
	StatusUnreachable Status = "unreachable"
	// StatusNotSynced: the node's watch is listing the store again; its
	// datapath is what it was at its applied revision.
	StatusNotSynced Status = "not-synced"
)

// NodeReport is what one node said.
type NodeReport struct {
	Name    string `json:"name"`
	Role    string `json:"role,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Synced  bool   `json:"synced"`
	Applied int64  `json:"applied_revision"`
	// Lag is the revision of the newest record the store holds (task, NVE
	// or domain) minus Applied, at least 0: a measure in etcd revisions,
	// not a count of mappings (a delete leaves no record to compare).
	Lag   int64  `json:"lag"`
	Error string `json:"error,omitempty"`
}

// Holding is what one node's datapath holds for a task.
type Holding struct {
	Node    string      `json:"node"`
	Locator ila.Locator `json:"locator,omitzero"`
	// Local: delivered locally on this node (Suspended: stopped for a
	// warm or cold move); InFlight: redirected there until InFlightUntil.
	Local         bool        `json:"local,omitempty"`
	Suspended     bool        `json:"suspended,omitempty"`
	InFlight      ila.Locator `json:"inflight,omitzero"`
	InFlightUntil time.Time   `json:"inflight_until,omitzero"`
	Applied       int64       `json:"applied_revision"`
	Status        Status      `json:"status"`
}

// TaskReport is one task and every node's entry for it. A task the store
// does not have (an entry left in some datapath) has Missing set.
type TaskReport struct {
	Domain     string         `json:"domain"`
	Tenant     string         `json:"tenant,omitempty"`
	Name       string         `json:"name,omitempty"`
	SIR        netip.Addr     `json:"sir"`
	Identifier ila.Identifier `json:"identifier"`
	// Locator, NVE and State as the store has them, and the revision of
	// the record's last change.
	Locator  ila.Locator `json:"locator,omitzero"`
	NVE      string      `json:"nve,omitempty"`
	State    ila.State   `json:"state,omitempty"`
	Revision int64       `json:"revision,omitempty"`
	Missing  bool        `json:"missing,omitempty"`
	Nodes    []Holding   `json:"nodes"`
}

// Report is the consistency view.
type Report struct {
	// Revision is the store revision the tasks were read at.
	Revision   int64        `json:"store_revision"`
	Nodes      []NodeReport `json:"nodes"`
	Tasks      []TaskReport `json:"tasks"`
	Consistent bool         `json:"consistent"`
}

// Problems lists, one line each, what is not consistent: every holding
// whose status is neither ok nor behind, and every node in error.
func (r *Report) Problems() []string {
	var out []string
	for _, n := range r.Nodes {
		if n.Error != "" {
			out = append(out, fmt.Sprintf("%s: %s", n.Name, n.Error))
		}
	}
	for _, t := range r.Tasks {
		for _, h := range t.Nodes {
			if h.Status != StatusOK && h.Status != StatusBehind && h.Status != StatusUnreachable {
				want := "no entry"
				if e := t.expected(); e != 0 {
					want = e.String()
				}
				got := "no entry"
				if h.Locator != 0 {
					got = h.Locator.String()
				}
				out = append(out, fmt.Sprintf("%s %s on %s: %s, holds %s, store has %s (task revision %d, applied %d)", t.label(), t.SIR, h.Node, h.Status, got, want, t.Revision, h.Applied))
			}
		}
	}
	return out
}

// Settled reports whether no node is behind: every datapath has applied
// every task's last change.
func (r *Report) Settled() bool {
	for _, t := range r.Tasks {
		for _, h := range t.Nodes {
			if h.Status == StatusBehind {
				return false
			}
		}
	}
	return true
}

func (t *TaskReport) label() string {
	switch {
	case t.Missing:
		return "(not in the store)"
	case t.Tenant != "":
		return t.Tenant + "/" + t.Name
	}
	return t.Name
}

// expected is the locator a datapath's mapping table should hold.
func (t *TaskReport) expected() ila.Locator {
	if t.Missing || t.State == ila.StateSuspended {
		return 0
	}
	return t.Locator
}

// Parallel is how many nodes Check asks at once.
const Parallel = 16

// NodeTimeout bounds each node's answer.
const NodeTimeout = 5 * time.Second

// Check builds the consistency view: it reads the NVEs from the store,
// asks every node (nodes(nves)) for its datapath, then reads the tasks
// from the store and compares. Nodes that cannot be reached are reported
// (StatusUnreachable, NodeReport.Error) and make the report inconsistent.
func Check(ctx context.Context, store Store, nodes Nodes, q Query) (*Report, error) {
	first, err := snapshot(ctx, store)
	if err != nil {
		return nil, err
	}
	ns := nodes(first.nves)
	views := ask(ctx, ns, q)
	snap, err := snapshot(ctx, store)
	if err != nil {
		return nil, err
	}
	return compare(snap, ns, views, q), nil
}

// Converge runs Check every interval until the report is consistent and
// settled (no node behind), and returns the last report; with ctx done
// before, that report (inconsistent or unsettled) and ctx's error.
func Converge(ctx context.Context, store Store, nodes Nodes, q Query, interval time.Duration) (*Report, error) {
	var last *Report
	for {
		r, err := Check(ctx, store, nodes, q)
		if err == nil {
			last = r
			if r.Consistent && r.Settled() {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, errors.Join(ctx.Err(), err)
			}
			return last, ctx.Err()
		case <-time.After(interval):
		}
	}
}

type storeTask struct {
	t   ila.Task
	rev int64
}

type snap struct {
	rev     int64
	newest  int64 // highest revision of a listed record
	nves    []ila.NVE
	domains map[string]ila.Domain
	tasks   []storeTask
}

// errSynced ends a snapshot's watch.
var errSynced = errors.New("synced")

// snapshot lists the store through a watch, up to its first EventSynced.
func snapshot(ctx context.Context, store Store) (*snap, error) {
	s := &snap{domains: map[string]ila.Domain{}}
	tasks := map[string]storeTask{}
	nves := map[string]ila.NVE{}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	synced := false
	err := store.Watch(wctx, func(ev ila.Event) {
		if synced {
			return
		}
		if ev.Type != ila.EventSynced {
			s.newest = max(s.newest, ev.Revision)
		}
		switch ev.Type {
		case ila.EventTaskUpsert:
			if ev.Task != nil {
				tasks[ev.Task.Domain+"/"+ev.Task.Identifier.Hex()] = storeTask{*ev.Task, ev.Revision}
			}
		case ila.EventTaskDelete:
			if ev.Task != nil {
				delete(tasks, ev.Task.Domain+"/"+ev.Task.Identifier.Hex())
			}
		case ila.EventNVEUpsert:
			if ev.NVE != nil {
				nves[ev.NVE.Name] = *ev.NVE
			}
		case ila.EventNVEDelete:
			if ev.NVE != nil {
				delete(nves, ev.NVE.Name)
			}
		case ila.EventDomainUpsert:
			if ev.Domain != nil {
				s.domains[ev.Domain.Name] = *ev.Domain
			}
		case ila.EventDomainDelete:
			if ev.Domain != nil {
				delete(s.domains, ev.Domain.Name)
			}
		case ila.EventSynced:
			synced, s.rev = true, ev.Revision
			cancel(errSynced)
		}
	})
	if !synced {
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			err = errors.New("watch ended before the store was listed")
		}
		return nil, fmt.Errorf("read the store: %w", err)
	}
	for _, n := range nves {
		s.nves = append(s.nves, n)
	}
	slices.SortFunc(s.nves, func(a, b ila.NVE) int { return strings.Compare(a.Name, b.Name) })
	for _, t := range tasks {
		s.tasks = append(s.tasks, t)
	}
	slices.SortFunc(s.tasks, func(a, b storeTask) int { return a.t.SIR.Compare(b.t.SIR) })
	return s, nil
}

type view struct {
	v   locator.DatapathView
	err error
}

// ask reads every node's datapath, Parallel at a time.
func ask(ctx context.Context, ns []Node, q Query) []view {
	out := make([]view, len(ns))
	sem := make(chan struct{}, Parallel)
	var wg sync.WaitGroup
	for i, n := range ns {
		if n.Agent == nil {
			out[i].err = n.Err
			if out[i].err == nil {
				out[i].err = errors.New("no way to reach its ilad")
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			nctx, cancel := context.WithTimeout(ctx, NodeTimeout)
			defer cancel()
			// One task by SIR when the query names it; by name, the
			// whole table (the node does not know names).
			out[i].v, out[i].err = n.Agent.Datapath(nctx, q.SIR)
		}()
	}
	wg.Wait()
	return out
}

func compare(s *snap, ns []Node, views []view, q Query) *Report {
	r := &Report{Revision: s.rev, Consistent: true, Nodes: []NodeReport{}, Tasks: []TaskReport{}}
	type entries map[netip.Addr]locator.DatapathEntry
	held := make([]entries, len(ns))
	for i, n := range ns {
		nr := NodeReport{Name: n.Name}
		v := views[i]
		if v.err != nil {
			nr.Error = v.err.Error()
			r.Consistent = false
		} else {
			nr.Role, nr.Mode, nr.Synced, nr.Applied = v.v.Role, v.v.Mode, v.v.Synced, v.v.Applied
			nr.Lag = max(s.newest-v.v.Applied, 0)
			held[i] = entries{}
			for _, e := range v.v.Entries {
				held[i][e.SIR] = e
			}
		}
		r.Nodes = append(r.Nodes, nr)
	}
	seen := map[netip.Addr]bool{}
	for _, st := range s.tasks {
		if !q.match(st.t) {
			continue
		}
		t := st.t
		seen[t.SIR] = true
		r.Tasks = append(r.Tasks, TaskReport{Domain: t.Domain, Tenant: t.Tenant, Name: t.Name, SIR: t.SIR, Identifier: t.Identifier,
			Locator: t.Locator, NVE: t.NVE, State: t.State, Revision: st.rev})
	}
	// Entries of datapaths for addresses the store does not have (all
	// tasks, or the one asked by address).
	if q.all() || q.SIR.IsValid() {
		extra := map[netip.Addr]TaskReport{}
		for i := range ns {
			for sir, e := range held[i] {
				if seen[sir] || e.Locator == 0 && !e.Local {
					continue // an in-flight redirect alone is not a mapping
				}
				if q.SIR.IsValid() && sir != q.SIR {
					continue
				}
				extra[sir] = TaskReport{Domain: e.Domain, SIR: sir, Identifier: e.Identifier, Missing: true}
			}
		}
		for _, t := range extra {
			r.Tasks = append(r.Tasks, t)
		}
		slices.SortFunc(r.Tasks, func(a, b TaskReport) int { return a.SIR.Compare(b.SIR) })
	}
	for ti := range r.Tasks {
		t := &r.Tasks[ti]
		t.Nodes = []Holding{}
		for i, n := range ns {
			h := Holding{Node: n.Name, Applied: r.Nodes[i].Applied}
			if views[i].err != nil {
				h.Status = StatusUnreachable
				t.Nodes = append(t.Nodes, h)
				continue
			}
			e := held[i][t.SIR]
			h.Locator, h.Local, h.Suspended, h.InFlight, h.InFlightUntil = e.Locator, e.Local, e.Suspended, e.InFlight, e.InFlightUntil
			h.Status = status(t, h, views[i].v, s.rev)
			if h.Status != StatusOK && h.Status != StatusBehind {
				r.Consistent = false
			}
			t.Nodes = append(t.Nodes, h)
		}
	}
	return r
}

// status judges one node's entry for a task.
func status(t *TaskReport, h Holding, v locator.DatapathView, storeRev int64) Status {
	want := t.expected()
	if h.Locator == want || h.Locator == 0 && v.Mode == string(locator.ModePull) {
		return StatusOK
	}
	if !v.Synced {
		return StatusNotSynced
	}
	need := t.Revision
	if t.Missing {
		need = storeRev // deleted at some revision up to the store's
	}
	if v.Applied < need {
		return StatusBehind
	}
	return StatusWrong
}
