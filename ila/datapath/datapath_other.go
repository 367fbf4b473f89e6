//go:build !linux

package datapath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// ErrNotSupported means the kernel (or OS) cannot run the datapath.
var ErrNotSupported = fmt.Errorf("ila datapath: %w", errors.ErrUnsupported)

// Datapath is unavailable on this OS; every method returns ErrNotSupported.
type Datapath struct{}

// Open returns ErrNotSupported.
func Open(cfg Config) (*Datapath, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

func (d *Datapath) AddLocator(loc ila.Locator, dom ila.Domain) error         { return ErrNotSupported }
func (d *Datapath) RemoveLocator(loc ila.Locator) error                      { return ErrNotSupported }
func (d *Datapath) AddDomain(dom ila.Domain) error                           { return ErrNotSupported }
func (d *Datapath) UpsertMapping(m ila.Mapping) error                        { return ErrNotSupported }
func (d *Datapath) UpsertMappings(ms []ila.Mapping) (int, error)             { return 0, ErrNotSupported }
func (d *Datapath) MappingsMemory() (uint64, error)                          { return 0, ErrNotSupported }
func (d *Datapath) DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error { return ErrNotSupported }
func (d *Datapath) UpsertLocal(l Local) error                                { return ErrNotSupported }
func (d *Datapath) DeleteLocal(sir ila.SIRPrefix, id ila.Identifier) error   { return ErrNotSupported }
func (d *Datapath) UpsertInFlight(m ila.Mapping, until time.Time) error      { return ErrNotSupported }
func (d *Datapath) DeleteInFlight(sir ila.SIRPrefix, id ila.Identifier) error {
	return ErrNotSupported
}
func (d *Datapath) ExpireInFlight(now time.Time) (int, error)  { return 0, ErrNotSupported }
func (d *Datapath) Attach(a Attachment) error                  { return ErrNotSupported }
func (d *Datapath) Detach(a Attachment) error                  { return ErrNotSupported }
func (d *Datapath) ReadMiss(ctx context.Context) (Miss, error) { return Miss{}, ErrNotSupported }
func (d *Datapath) SetMonitor(on bool) error                   { return ErrNotSupported }
func (d *Datapath) ReadEvent(ctx context.Context) (Event, error) {
	return Event{}, ErrNotSupported
}
func (d *Datapath) MonitorLost() (uint64, error)               { return 0, ErrNotSupported }
func (d *Datapath) Stats() (Stats, error)                      { return Stats{}, ErrNotSupported }
func (d *Datapath) Mappings(fn func(ila.Mapping) bool) error   { return ErrNotSupported }
func (d *Datapath) Close() error                               { return nil }
func (d *Datapath) Unpin() error                               { return ErrNotSupported }
func (d *Datapath) AllowTenants(a, b ila.TenantID) error       { return ErrNotSupported }
func (d *Datapath) DisallowTenants(a, b ila.TenantID) error    { return ErrNotSupported }
func (d *Datapath) TenantPolicies() ([][2]ila.TenantID, error) { return nil, ErrNotSupported }
