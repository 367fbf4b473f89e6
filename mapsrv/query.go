package mapsrv

import (
	"context"
	"fmt"
	"sort"

	"github.com/ilamesh/ilamesh/ila"
)

// resolve finds a task by tenant/name, or by domain and identifier.
func (s *Service) resolve(ctx context.Context, tenant, name, domain string, id ila.Identifier) (TaskRecord, KV, error) {
	if name != "" {
		if tenant == "" {
			tenant = "default"
		}
		if err := CheckName("tenant", tenant); err != nil {
			return TaskRecord{}, KV{}, err
		}
		if err := CheckName("task", name); err != nil {
			return TaskRecord{}, KV{}, err
		}
		kvs, err := s.store.Get(ctx, NameKey(tenant, name))
		if err != nil {
			return TaskRecord{}, KV{}, s.storeErr(fmt.Errorf("get task %s/%s: %w", tenant, name, err))
		}
		if kvs[0].Revision == 0 {
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: %w", tenant, name, ErrNotFound)
		}
		x, err := DecodeIndex(kvs[0].Key, kvs[0].Value)
		if err != nil {
			s.malformed(kvs[0], err)
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: %w", tenant, name, ErrNotFound)
		}
		rec, kv, err := s.resolve(ctx, "", "", x.Domain, x.Identifier)
		if err == nil && (rec.Tenant != tenant || rec.Name != name) {
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: stale name index: %w", tenant, name, ErrNotFound)
		}
		return rec, kv, err
	}
	if domain == "" {
		return TaskRecord{}, KV{}, fmt.Errorf("task: a name or a domain and identifier are required: %w", ErrInvalid)
	}
	if err := CheckName("domain", domain); err != nil {
		return TaskRecord{}, KV{}, err
	}
	key := TaskKey(domain, id)
	kvs, err := s.store.Get(ctx, key)
	if err != nil {
		return TaskRecord{}, KV{}, s.storeErr(fmt.Errorf("get task %s: %w", key, err))
	}
	if kvs[0].Revision == 0 {
		return TaskRecord{}, kvs[0], fmt.Errorf("task %s/%s: %w", domain, id, ErrNotFound)
	}
	rec, err := DecodeTask(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return TaskRecord{}, kvs[0], fmt.Errorf("task %s/%s: %w", domain, id, ErrNotFound)
	}
	return rec, kvs[0], nil
}

// Task returns a task by tenant/name. Its Expiry is when this replica
// would expire it (renew.go): refreshes held in memory are not in the
// stored record.
func (s *Service) Task(ctx context.Context, tenant, name string) (TaskRecord, error) {
	rec, _, err := s.resolve(ctx, tenant, name, "", 0)
	return s.withExpiryOne(ctx, rec, err)
}

// TaskByID returns a task by domain and identifier, with its expiry as
// Task.
func (s *Service) TaskByID(ctx context.Context, domain string, id ila.Identifier) (TaskRecord, error) {
	rec, _, err := s.resolve(ctx, "", "", domain, id)
	return s.withExpiryOne(ctx, rec, err)
}

func (s *Service) withExpiryOne(ctx context.Context, rec TaskRecord, err error) (TaskRecord, error) {
	if err != nil {
		return rec, err
	}
	recs, err := s.withExpiry(ctx, []TaskRecord{rec})
	if err != nil {
		return TaskRecord{}, err
	}
	return recs[0], nil
}

// Tasks lists every task, skipping malformed values, with their expiry as
// Task.
func (s *Service) Tasks(ctx context.Context) ([]TaskRecord, error) {
	recs, _, err := s.tasks(ctx)
	if err != nil {
		return nil, err
	}
	return s.withExpiry(ctx, recs)
}

func (s *Service) tasks(ctx context.Context) ([]TaskRecord, []KV, error) {
	kvs, _, err := s.store.List(ctx, MapPrefix)
	if err != nil {
		return nil, nil, s.storeErr(fmt.Errorf("list tasks: %w", err))
	}
	var out []TaskRecord
	var okv []KV
	for _, kv := range kvs {
		rec, err := DecodeTask(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, rec)
		okv = append(okv, kv)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Name < out[j].Name
	})
	return out, okv, nil
}
