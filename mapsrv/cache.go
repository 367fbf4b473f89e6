package mapsrv

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// cacheTTL bounds how long the registration path trusts cached domain
// and NVE records. Correctness does not depend on it: every transaction
// compares the revisions of the records it used, a conflict drops the
// cache and the registration is retried with fresh reads, and so is a
// refusal decided on cached data.
const cacheTTL = 2 * time.Second

// recordCache holds domains and NVEs read recently, with their revisions.
type recordCache struct {
	mu      sync.Mutex
	nves    map[string]cachedNVE
	doms    map[string]cachedDomain
	domList []ila.Domain
	listAt  time.Time
}

type cachedNVE struct {
	rec NVERecord
	kv  KV
	at  time.Time
}

type cachedDomain struct {
	d  ila.Domain
	kv KV
	at time.Time
}

func (c *recordCache) invalidate() {
	c.mu.Lock()
	c.nves, c.doms, c.domList = nil, nil, nil
	c.mu.Unlock()
}

func (s *Service) cachedNVE(ctx context.Context, name string) (NVERecord, KV, error) {
	c := &s.cache
	c.mu.Lock()
	e, ok := c.nves[name]
	c.mu.Unlock()
	if ok && time.Since(e.at) < cacheTTL {
		return e.rec, e.kv, nil
	}
	rec, kv, err := s.getNVE(ctx, name)
	if err != nil {
		return rec, kv, err
	}
	c.mu.Lock()
	if c.nves == nil {
		c.nves = make(map[string]cachedNVE)
	}
	c.nves[name] = cachedNVE{rec: rec, kv: kv, at: time.Now()}
	c.mu.Unlock()
	return rec, kv, nil
}

func (s *Service) cachedDomain(ctx context.Context, name string) (ila.Domain, KV, error) {
	c := &s.cache
	c.mu.Lock()
	e, ok := c.doms[name]
	c.mu.Unlock()
	if ok && time.Since(e.at) < cacheTTL {
		return e.d, e.kv, nil
	}
	d, kv, err := s.getDomain(ctx, name)
	if err != nil {
		return d, kv, err
	}
	c.mu.Lock()
	if c.doms == nil {
		c.doms = make(map[string]cachedDomain)
	}
	c.doms[name] = cachedDomain{d: d, kv: kv, at: time.Now()}
	c.mu.Unlock()
	return d, kv, nil
}

func (s *Service) cachedDomains(ctx context.Context) ([]ila.Domain, error) {
	c := &s.cache
	c.mu.Lock()
	l, at := c.domList, c.listAt
	c.mu.Unlock()
	if l != nil && time.Since(at) < cacheTTL {
		return l, nil
	}
	l, err := s.Domains(ctx)
	if err != nil {
		return nil, err
	}
	if l == nil {
		l = []ila.Domain{}
	}
	c.mu.Lock()
	c.domList, c.listAt = l, time.Now()
	c.mu.Unlock()
	return l, nil
}

// domainOf finds the domain whose SIR prefix holds sir.
func domainOf(doms []ila.Domain, sir ila.SIRPrefix) (ila.Domain, bool) {
	for _, d := range doms {
		if d.SIR == sir {
			return d, true
		}
	}
	return ila.Domain{}, false
}

// maxKVCache bounds the task and index entries remembered; the cache is
// dropped when it grows past it.
const maxKVCache = 1 << 17

// kvCache remembers the task and index entries this Service wrote, with
// their revisions, so that a registration can go straight to its
// conditional transaction: a new task is assumed absent and a known task
// at the revision this Service wrote. A wrong guess fails the transaction's
// comparison and the registration is retried with fresh reads.
type kvCache struct {
	mu sync.Mutex
	m  map[string]kvEntry
}

// kvEntry is a remembered entry and its decoded value (a TaskRecord or an
// Index; nil if unknown), which spares the registration path decoding
// the JSON it encoded itself.
type kvEntry struct {
	kv KV
	v  any
}

func cacheable(key string) bool {
	return strings.HasPrefix(key, MapPrefix) || strings.HasPrefix(key, NamePrefix) || strings.HasPrefix(key, MACPrefix)
}

// get returns the remembered entries and their decoded values (a shared
// TaskRecord must be copied with cloneTask before it is changed); unknown
// keys come back absent.
func (c *kvCache) get(keys ...string) ([]KV, []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KV, len(keys))
	vals := make([]any, len(keys))
	for i, k := range keys {
		if e, ok := c.m[k]; ok {
			out[i], vals[i] = e.kv, e.v
		} else {
			out[i] = KV{Key: k}
		}
	}
	return out, vals
}

// committed records the writes of a transaction committed at rev. vals
// are the values the puts encoded (nil: unknown).
func (c *kvCache) committed(rev int64, ops []Op, vals []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > maxKVCache {
		c.m = make(map[string]kvEntry)
	}
	for i, op := range ops {
		if !cacheable(op.Key) {
			continue
		}
		if op.Delete {
			delete(c.m, op.Key)
			continue
		}
		e := kvEntry{kv: KV{Key: op.Key, Value: op.Value, Revision: rev}}
		if i < len(vals) {
			switch v := vals[i].(type) {
			case TaskRecord:
				// Only what DecodeTask would accept, so that the cached
				// and the decoded paths agree.
				if checkTask(op.Key, v) == nil {
					e.v = cloneTask(v)
				}
			case Index:
				if v.Domain != "" {
					e.v = v
				}
			}
		}
		c.m[op.Key] = e
	}
}

// cloneTask copies the slices of t, so that the copy can be changed.
func cloneTask(t TaskRecord) TaskRecord {
	t.Moves = slices.Clone(t.Moves)
	t.Previous = slices.Clone(t.Previous)
	return t
}

// conflicted forgets the compared keys of a failed transaction.
func (c *kvCache) conflicted(conds []Cond) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cd := range conds {
		delete(c.m, cd.Key)
	}
}
