// Package mapsrvtest provides an in-memory mapsrv.Store for tests.
package mapsrvtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// Store is an in-memory mapsrv.Store with etcd's revision semantics. The
// zero value is ready to use and safe for concurrent use.
type Store struct {
	mu  sync.Mutex
	rev int64
	kv  map[string]mapsrv.KV
}

var _ mapsrv.Store = (*Store)(nil)

// Get implements mapsrv.Store.
func (s *Store) Get(_ context.Context, keys ...string) ([]mapsrv.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]mapsrv.KV, len(keys))
	for i, k := range keys {
		if kv, ok := s.kv[k]; ok {
			out[i] = kv
		} else {
			out[i] = mapsrv.KV{Key: k}
		}
	}
	return out, nil
}

// List implements mapsrv.Store.
func (s *Store) List(_ context.Context, prefix string) ([]mapsrv.KV, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mapsrv.KV
	for k, kv := range s.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, s.rev, nil
}

// Txn implements mapsrv.Store.
func (s *Store) Txn(_ context.Context, conds []mapsrv.Cond, ops []mapsrv.Op) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range conds {
		if s.kv[c.Key].Revision != c.Revision {
			return 0, fmt.Errorf("txn on %s: %w", c.Key, mapsrv.ErrConflict)
		}
	}
	if len(ops) == 0 {
		return s.rev, nil
	}
	s.rev++
	if s.kv == nil {
		s.kv = make(map[string]mapsrv.KV)
	}
	for _, op := range ops {
		if op.Delete {
			delete(s.kv, op.Key)
			continue
		}
		s.kv[op.Key] = mapsrv.KV{Key: op.Key, Value: append([]byte(nil), op.Value...), Revision: s.rev}
	}
	return s.rev, nil
}

// Put writes a raw value (for tests that plant malformed records).
func (s *Store) Put(key string, value []byte) {
	_, _ = s.Txn(context.Background(), nil, []mapsrv.Op{{Key: key, Value: value}})
}
