package mapsrv

import (
	"context"
	"errors"
	"fmt"

	"github.com/ilamesh/ilamesh/ila"
)

// DeregisterRequest names a task to remove. NVE, when set, must be the
// serving (or pending) NVE: an NVE cannot deregister another's task.
type DeregisterRequest struct {
	Tenant, Name string
	Domain       string
	Identifier   ila.Identifier
	NVE          string
}

// Deregister removes a task and its index entries.
func (s *Service) Deregister(ctx context.Context, d DeregisterRequest) error {
	for attempt := 0; ; attempt++ {
		err := s.deregister(ctx, d)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue
		}
		if err == nil {
			s.c.deregs.Add(1)
		}
		return err
	}
}

func (s *Service) deregister(ctx context.Context, d DeregisterRequest) error {
	rec, tkv, err := s.resolve(ctx, d.Tenant, d.Name, d.Domain, d.Identifier)
	if err != nil {
		return err
	}
	if d.NVE != "" && d.NVE != rec.NVE && d.NVE != rec.PendingNVE {
		return fmt.Errorf("deregister task %s/%s (%s): served by nve %s, not %s: %w", rec.Tenant, rec.Name, rec.Identifier, rec.NVE, d.NVE, ErrForbidden)
	}
	b, err := s.deleteTask(ctx, rec, tkv)
	if err != nil {
		return err
	}
	if err := s.commit(ctx, b, "deregister task "+tkv.Key); err != nil {
		return err
	}
	s.forget(tkv.Key)
	return nil
}

// deleteTask builds the transaction removing a task and the index entries
// that point at it.
func (s *Service) deleteTask(ctx context.Context, rec TaskRecord, tkv KV) (*txnBuilder, error) {
	var b txnBuilder
	b.cond(tkv)
	b.del(tkv.Key)
	var keys []string
	if rec.Name != "" {
		keys = append(keys, NameKey(rec.Tenant, rec.Name))
	}
	if !rec.MAC.IsZero() {
		keys = append(keys, MACKey(rec.MAC))
	}
	if len(keys) == 0 {
		return &b, nil
	}
	kvs, err := s.store.Get(ctx, keys...)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("get indexes of %s: %w", tkv.Key, err))
	}
	for _, kv := range kvs {
		if kv.Revision == 0 {
			continue
		}
		x, err := DecodeIndex(kv.Key, kv.Value)
		if err == nil && (x.Domain != rec.Domain || x.Identifier != rec.Identifier) {
			continue // points at another task now
		}
		b.cond(kv)
		b.del(kv.Key)
	}
	return &b, nil
}
