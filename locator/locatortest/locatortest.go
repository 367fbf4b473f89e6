// Package locatortest has in-memory stand-ins for the agent's collaborators:
// a map-backed Datapath that records its operations, a Source fed by the
// test, and a Registrar.
package locatortest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
)

// Key is a datapath table key.
type Key struct {
	SIR ila.SIRPrefix
	ID  ila.Identifier
}

// InFlight is an in-flight entry.
type InFlight struct {
	Mapping ila.Mapping
	Until   time.Time
}

// Datapath is a map-backed locator.Datapath. Safe for concurrent use.
type Datapath struct {
	mu       sync.Mutex
	domains  map[string]ila.Domain
	locators map[ila.Locator]string
	maps     map[Key]ila.Mapping
	locals   map[Key]locator.Local
	inflight map[Key]InFlight
	ports    map[string]int
	ops      int
	batches  int
	// OnUpsert, if set, is called after every UpsertMapping (benchmarks).
	OnUpsert func(ila.Mapping)
	// Fail, if set, makes every operation return it.
	Fail error
}

// NewDatapath returns an empty datapath.
func NewDatapath() *Datapath {
	return &Datapath{
		domains: map[string]ila.Domain{}, locators: map[ila.Locator]string{},
		maps: map[Key]ila.Mapping{}, locals: map[Key]locator.Local{},
		inflight: map[Key]InFlight{}, ports: map[string]int{},
	}
}

var _ locator.Datapath = (*Datapath)(nil)
var _ locator.InFlightLister = (*Datapath)(nil)
var _ locator.LocalLister = (*Datapath)(nil)
var _ locator.MappingBatcher = (*Datapath)(nil)

func (d *Datapath) AddDomain(dom ila.Domain) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.domains[dom.Name] = dom
	return d.Fail
}

func (d *Datapath) AddLocator(loc ila.Locator, dom ila.Domain) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.locators[loc] = dom.Name
	return d.Fail
}

func (d *Datapath) UpsertMapping(m ila.Mapping) error {
	d.mu.Lock()
	if d.Fail != nil {
		d.mu.Unlock()
		return d.Fail
	}
	d.ops++
	d.maps[Key{m.SIR, m.Identifier}] = m
	f := d.OnUpsert
	d.mu.Unlock()
	if f != nil {
		f(m)
	}
	return nil
}

// UpsertMappings implements locator.MappingBatcher: UpsertMapping for
// each (each counts as an op), counted as one batch.
func (d *Datapath) UpsertMappings(ms []ila.Mapping) (int, error) {
	d.mu.Lock()
	d.batches++
	d.mu.Unlock()
	for i, m := range ms {
		if err := d.UpsertMapping(m); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

// Batches counts UpsertMappings calls.
func (d *Datapath) Batches() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.batches
}

func (d *Datapath) DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ops++
	delete(d.maps, Key{sir, id})
	return d.Fail
}

func (d *Datapath) Mappings(fn func(ila.Mapping) bool) error {
	d.mu.Lock()
	all := make([]ila.Mapping, 0, len(d.maps))
	for _, m := range d.maps {
		all = append(all, m)
	}
	d.mu.Unlock()
	for _, m := range all {
		if !fn(m) {
			break
		}
	}
	return nil
}

func (d *Datapath) UpsertLocal(l locator.Local) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Fail != nil {
		return d.Fail
	}
	d.locals[Key{l.SIR, l.Identifier}] = l
	return nil
}

func (d *Datapath) DeleteLocal(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.locals, Key{sir, id})
	return d.Fail
}

func (d *Datapath) Locals(fn func(locator.Local) bool) error {
	for _, l := range d.LocalEntries() {
		if !fn(l) {
			break
		}
	}
	return nil
}

func (d *Datapath) UpsertInFlight(m ila.Mapping, until time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight[Key{m.SIR, m.Identifier}] = InFlight{m, until}
	return d.Fail
}

func (d *Datapath) DeleteInFlight(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inflight, Key{sir, id})
	return d.Fail
}

func (d *Datapath) InFlights(fn func(ila.Mapping, time.Time) bool) error {
	for _, f := range d.InFlightEntries() {
		if !fn(f.Mapping, f.Until) {
			break
		}
	}
	return nil
}

func (d *Datapath) AttachPort(ifname string, ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ports[ifname] = ifindex
	return d.Fail
}

func (d *Datapath) DetachPort(ifname string, ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.ports, ifname)
	return nil
}

// Table returns a copy of the mappings.
func (d *Datapath) Table() map[Key]ila.Mapping {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[Key]ila.Mapping, len(d.maps))
	for k, v := range d.maps {
		out[k] = v
	}
	return out
}

// LocalEntries returns a copy of the local entries.
func (d *Datapath) LocalEntries() map[Key]locator.Local {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[Key]locator.Local, len(d.locals))
	for k, v := range d.locals {
		out[k] = v
	}
	return out
}

// InFlightEntries returns a copy of the in-flight entries.
func (d *Datapath) InFlightEntries() map[Key]InFlight {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[Key]InFlight, len(d.inflight))
	for k, v := range d.inflight {
		out[k] = v
	}
	return out
}

// Ports returns the attached ports by name.
func (d *Datapath) Ports() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.ports))
	for k, v := range d.ports {
		out[k] = v
	}
	return out
}

// Ops counts mapping upserts and deletes.
func (d *Datapath) Ops() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ops
}

// ErrDisconnected is returned by Source.Watch after Disconnect.
var ErrDisconnected = errors.New("locatortest: disconnected")

// Source is a MappingSource whose store is a map: each Watch call lists it
// (upserts, then EventSynced) and then delivers Set/Delete changes until
// Disconnect or cancellation.
type Source struct {
	mu      sync.Mutex
	rev     int64
	tasks   map[tk]ila.Task
	domains map[string]ila.Domain
	subs    map[chan ila.Event]bool
	drop    chan struct{}
	// Watches counts Watch calls.
	Watches int
}

// NewSource returns an empty source.
func NewSource() *Source {
	return &Source{tasks: map[tk]ila.Task{}, domains: map[string]ila.Domain{}, subs: map[chan ila.Event]bool{}, drop: make(chan struct{})}
}

type tk struct {
	dom string
	id  ila.Identifier
}

func (s *Source) publish(ev ila.Event) {
	for c := range s.subs {
		c <- ev
	}
}

// SetDomain stores a domain.
func (s *Source) SetDomain(d ila.Domain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.domains[d.Name] = d
	s.publish(ila.Event{Type: ila.EventDomainUpsert, Revision: s.rev, Domain: &d})
}

// SetTask stores a task (keyed by domain and identifier).
func (s *Source) SetTask(t ila.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.tasks[tk{t.Domain, t.Identifier}] = t
	s.publish(ila.Event{Type: ila.EventTaskUpsert, Revision: s.rev, Task: &t})
}

// DeleteTask removes a task.
func (s *Source) DeleteTask(t ila.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	delete(s.tasks, tk{t.Domain, t.Identifier})
	s.publish(ila.Event{Type: ila.EventTaskDelete, Revision: s.rev, Task: &t})
}

// DeleteTaskQuietly removes a task without telling current watchers, as a
// delete lost during a disconnection.
func (s *Source) DeleteTaskQuietly(t ila.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	delete(s.tasks, tk{t.Domain, t.Identifier})
}

// SetTaskQuietly stores a task without telling current watchers, as a
// change not yet delivered (a partition, a slow watch).
func (s *Source) SetTaskQuietly(t ila.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.tasks[tk{t.Domain, t.Identifier}] = t
}

// Disconnect makes every running Watch return ErrDisconnected.
func (s *Source) Disconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.drop)
	s.drop = make(chan struct{})
}

// GetTask implements locator.TaskLookup.
func (s *Source) GetTask(ctx context.Context, domain string, id ila.Identifier) (ila.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[tk{domain, id}]
	if !ok || t.Domain != domain {
		return ila.Task{}, fmt.Errorf("task %s/%s: %w", domain, id, locator.ErrNotFound)
	}
	return t, nil
}

// Watch implements locator.MappingSource.
func (s *Source) Watch(ctx context.Context, fn func(ila.Event)) error {
	c := make(chan ila.Event, 1024)
	s.mu.Lock()
	s.Watches++
	var list []ila.Event
	for _, d := range s.domains {
		d := d
		list = append(list, ila.Event{Type: ila.EventDomainUpsert, Revision: s.rev, Domain: &d})
	}
	for _, t := range s.tasks {
		t := t
		list = append(list, ila.Event{Type: ila.EventTaskUpsert, Revision: s.rev, Task: &t})
	}
	list = append(list, ila.Event{Type: ila.EventSynced, Revision: s.rev})
	s.subs[c] = true
	drop := s.drop
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, c)
		s.mu.Unlock()
	}()
	for _, ev := range list {
		fn(ev)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-drop:
			return ErrDisconnected
		case ev := <-c:
			fn(ev)
		}
	}
}

// Registrar records registrations and answers with Grant (or Err).
type Registrar struct {
	mu    sync.Mutex
	regs  []locator.Registration
	Grant time.Duration
	Err   error
	// OnRegister, if set, is called with every registration.
	OnRegister func(locator.Registration)
}

// Register implements locator.Registrar.
func (r *Registrar) Register(ctx context.Context, reg locator.Registration) (time.Duration, error) {
	r.mu.Lock()
	r.regs = append(r.regs, reg)
	g, err, f := r.Grant, r.Err, r.OnRegister
	r.mu.Unlock()
	if f != nil {
		f(reg)
	}
	if err != nil {
		return 0, err
	}
	if reg.Lifetime == 0 {
		return 0, nil
	}
	return min(g, reg.Lifetime), nil
}

// SetErr changes the answer.
func (r *Registrar) SetErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Err = err
}

// Registrations returns what was sent so far.
func (r *Registrar) Registrations() []locator.Registration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]locator.Registration(nil), r.regs...)
}
