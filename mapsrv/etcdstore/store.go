// Package etcdstore is the etcd implementation of mapsrv.Store, typed
// lookups of the stored records, and the watch client every component uses
// to follow the mapping (list, then watch from the listed revision).
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Store is a mapsrv.Store over an etcd KV.
type Store struct {
	kv    clientv3.KV
	opts  []clientv3.OpOption
	batch *batcher // nil: no batching
}

var _ mapsrv.Store = (*Store)(nil)

// Options tune a Store.
type Options struct {
	// SerializableReads serves Get from the local member without a
	// linearizable read barrier. Writes stay safe (every transaction
	// compares the revisions read, so a stale read ends in a conflict and
	// a retry), but a stale read may fail a move that would have won. Use
	// with a single member (the embedded default), where reads lag
	// commits by at most an apply.
	SerializableReads bool
	// MaxBatch bounds how many concurrent Txn calls are committed
	// together as one etcd transaction (each call nested with its own
	// comparisons, so that each succeeds or fails on its own; see
	// batch.go). 0 means DefaultMaxBatch; 1 turns batching off. Batching
	// needs etcd 3.3 or later (nested transactions).
	MaxBatch int
}

// New returns a Store using kv (a *clientv3.Client, or a namespaced KV)
// with linearizable reads and batched transactions.
func New(kv clientv3.KV) *Store { return NewWithOptions(kv, Options{}) }

// NewWithOptions returns a Store using kv tuned by opts.
func NewWithOptions(kv clientv3.KV, opts Options) *Store {
	s := &Store{kv: kv}
	if opts.SerializableReads {
		s.opts = []clientv3.OpOption{clientv3.WithSerializable()}
	}
	max := opts.MaxBatch
	if max <= 0 {
		max = DefaultMaxBatch
	}
	if max > 1 {
		s.batch = &batcher{kv: kv, max: max}
	}
	return s
}

// BatchStats returns how many transactions were committed in batches of
// more than one call, and how many calls those batches held.
func (s *Store) BatchStats() (batches, calls uint64) {
	if s.batch == nil {
		return 0, 0
	}
	return s.batch.batches.Load(), s.batch.batched.Load()
}

// Get implements mapsrv.Store: one read of all keys at one revision.
func (s *Store) Get(ctx context.Context, keys ...string) ([]mapsrv.KV, error) {
	out := make([]mapsrv.KV, len(keys))
	if len(keys) == 1 {
		resp, err := s.kv.Get(ctx, keys[0], s.opts...)
		if err != nil {
			return nil, fmt.Errorf("etcd get %s: %w", keys[0], err)
		}
		out[0] = mapsrv.KV{Key: keys[0]}
		if len(resp.Kvs) == 1 {
			out[0].Value, out[0].Revision = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		return out, nil
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k, s.opts...)
	}
	resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd get %v: %w", keys, err)
	}
	for i, k := range keys {
		out[i] = mapsrv.KV{Key: k}
		r := resp.Responses[i].GetResponseRange()
		if r != nil && len(r.Kvs) == 1 {
			out[i].Value, out[i].Revision = r.Kvs[0].Value, r.Kvs[0].ModRevision
		}
	}
	return out, nil
}

const pageSize = 1000

// List implements mapsrv.Store: every key under prefix at one revision,
// read in pages.
func (s *Store) List(ctx context.Context, prefix string) ([]mapsrv.KV, int64, error) {
	kvs, rev, err := list(ctx, s.kv, prefix)
	if err != nil {
		return nil, 0, err
	}
	out := make([]mapsrv.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = mapsrv.KV{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}
	}
	return out, rev, nil
}

type rawKV struct {
	Key         []byte
	Value       []byte
	ModRevision int64
}

// list reads every key under prefix at one revision.
func list(ctx context.Context, kv clientv3.KV, prefix string) ([]rawKV, int64, error) {
	var out []rawKV
	rev, err := listEach(ctx, kv, prefix, 0, func(kvs []*mvccpb.KeyValue) error {
		for _, kv := range kvs {
			out = append(out, rawKV{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision})
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// listEach reads every key under prefix at one revision (rev, or 0 for
// the current one, which it returns), in key order, and passes them to fn
// as they arrive (fn's error ends the list). It
// streams the range (RangeStream, etcd 3.7 and later), and falls back to
// pages of pageSize keys on a server without it (older etcd, the gRPC
// proxy). The stream matters at scale: etcd counts the whole rest of the
// range for every page of a paged read, so paging a million keys visits
// 5*10^8 of them.
func listEach(ctx context.Context, kv clientv3.KV, prefix string, rev int64, fn func([]*mvccpb.KeyValue) error) (int64, error) {
	r, started, err := listStream(ctx, kv, prefix, rev, fn)
	if !started && status.Code(err) == codes.Unimplemented {
		return listPaged(ctx, kv, prefix, rev, fn)
	}
	return r, err
}

// listStream streams the range; started reports whether fn was called.
func listStream(ctx context.Context, kv clientv3.KV, prefix string, atRev int64, fn func([]*mvccpb.KeyValue) error) (rev int64, started bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream's goroutine on an early return
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if atRev != 0 {
		opts = append(opts, clientv3.WithRev(atRev))
	}
	ch, err := kv.GetStream(sctx, prefix, opts...)
	if err != nil {
		return 0, false, fmt.Errorf("etcd list %s: %w", prefix, err)
	}
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return 0, started, fmt.Errorf("etcd list %s: %w", prefix, err)
		}
		if resp.Header != nil {
			rev = resp.Header.Revision
		}
		if len(resp.Kvs) > 0 {
			started = true
			if err := fn(resp.Kvs); err != nil {
				return 0, started, err
			}
		}
	}
	if rev == 0 {
		return 0, started, fmt.Errorf("etcd list %s: stream ended without its revision", prefix)
	}
	if atRev != 0 {
		rev = atRev // the header holds the store's current revision
	}
	return rev, started, nil
}

func listPaged(ctx context.Context, kv clientv3.KV, prefix string, rev int64, fn func([]*mvccpb.KeyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := kv.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("etcd list %s: %w", prefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if len(resp.Kvs) > 0 {
			if err := fn(resp.Kvs); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Txn implements mapsrv.Store: ops apply only if every key still has the
// revision read (0: absent); otherwise mapsrv.ErrConflict. Concurrent
// calls may share one etcd transaction (Options.MaxBatch).
func (s *Store) Txn(ctx context.Context, conds []mapsrv.Cond, ops []mapsrv.Op) (int64, error) {
	c := &txnCall{
		ctx:    ctx,
		cmps:   make([]clientv3.Cmp, 0, len(conds)),
		ops:    make([]clientv3.Op, 0, len(ops)),
		keys:   make([]string, 0, len(conds)+len(ops)),
		writes: make([]string, 0, len(ops)),
	}
	for i, cd := range conds {
		dup := false
		for _, p := range conds[:i] {
			if p.Key == cd.Key {
				if p.Revision != cd.Revision {
					return 0, fmt.Errorf("txn: key %s compared at two revisions: %w", cd.Key, mapsrv.ErrConflict)
				}
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		c.cmps = append(c.cmps, clientv3.Compare(clientv3.ModRevision(cd.Key), "=", cd.Revision))
		c.keys = append(c.keys, cd.Key)
		c.size += len(cd.Key)
	}
	for _, op := range ops {
		if op.Delete {
			c.ops = append(c.ops, clientv3.OpDelete(op.Key))
		} else {
			c.ops = append(c.ops, clientv3.OpPut(op.Key, string(op.Value)))
		}
		c.keys = append(c.keys, op.Key)
		c.writes = append(c.writes, op.Key)
		c.size += len(op.Key) + len(op.Value)
	}
	var r txnResult
	if s.batch != nil && batchable(c) && !dupWrites(c.writes) {
		r = s.batch.do(c)
	} else {
		r = commitOne(ctx, s.kv, c)
	}
	if r.err != nil {
		return 0, r.err
	}
	if !r.ok {
		return 0, fmt.Errorf("etcd txn: %w", mapsrv.ErrConflict)
	}
	return r.rev, nil
}

// dupWrites reports whether a key is written twice: etcd refuses such a
// transaction, which must then fail alone, not in a batch.
func dupWrites(keys []string) bool {
	for i, k := range keys {
		for _, p := range keys[:i] {
			if p == k {
				return true
			}
		}
	}
	return false
}

func (s *Store) get1(ctx context.Context, key string) (mapsrv.KV, error) {
	kvs, err := s.Get(ctx, key)
	if err != nil {
		return mapsrv.KV{}, err
	}
	if kvs[0].Revision == 0 {
		return kvs[0], fmt.Errorf("%s: %w", key, mapsrv.ErrNotFound)
	}
	return kvs[0], nil
}

// GetTask returns the task with identifier id in domain (mapsrv.ErrNotFound
// if there is none; mapsrv.ErrMalformed if its value cannot be decoded).
func (s *Store) GetTask(ctx context.Context, domain string, id ila.Identifier) (ila.Task, error) {
	kv, err := s.get1(ctx, mapsrv.TaskKey(domain, id))
	if err != nil {
		return ila.Task{}, err
	}
	rec, err := mapsrv.DecodeTask(kv.Key, kv.Value)
	if err != nil {
		return ila.Task{}, err
	}
	return rec.Task, nil
}

func (s *Store) byIndex(ctx context.Context, key string) (ila.Task, error) {
	kv, err := s.get1(ctx, key)
	if err != nil {
		return ila.Task{}, err
	}
	x, err := mapsrv.DecodeIndex(kv.Key, kv.Value)
	if err != nil {
		return ila.Task{}, err
	}
	t, err := s.GetTask(ctx, x.Domain, x.Identifier)
	if errors.Is(err, mapsrv.ErrNotFound) {
		return ila.Task{}, fmt.Errorf("%s: stale index entry: %w", key, mapsrv.ErrNotFound)
	}
	return t, err
}

// TaskByName returns the task named name in tenant.
func (s *Store) TaskByName(ctx context.Context, tenant, name string) (ila.Task, error) {
	t, err := s.byIndex(ctx, mapsrv.NameKey(tenant, name))
	if err == nil && (t.Tenant != tenant || t.Name != name) {
		return ila.Task{}, fmt.Errorf("task %s/%s: stale index entry: %w", tenant, name, mapsrv.ErrNotFound)
	}
	return t, err
}

// TaskByMAC returns the task registered with mac (for RARP).
func (s *Store) TaskByMAC(ctx context.Context, mac ila.MAC) (ila.Task, error) {
	t, err := s.byIndex(ctx, mapsrv.MACKey(mac))
	if err == nil && t.MAC != mac {
		return ila.Task{}, fmt.Errorf("task with mac %s: stale index entry: %w", mac, mapsrv.ErrNotFound)
	}
	return t, err
}

// Tasks lists every task, skipping malformed values.
func (s *Store) Tasks(ctx context.Context) ([]ila.Task, error) {
	kvs, _, err := s.List(ctx, mapsrv.MapPrefix)
	if err != nil {
		return nil, err
	}
	var out []ila.Task
	for _, kv := range kvs {
		if rec, err := mapsrv.DecodeTask(kv.Key, kv.Value); err == nil {
			out = append(out, rec.Task)
		}
	}
	return out, nil
}

// Domains lists the domains, skipping malformed values.
func (s *Store) Domains(ctx context.Context) ([]ila.Domain, error) {
	kvs, _, err := s.List(ctx, mapsrv.DomainPrefix)
	if err != nil {
		return nil, err
	}
	var out []ila.Domain
	for _, kv := range kvs {
		if d, err := mapsrv.DecodeDomain(kv.Key, kv.Value); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// NVEs lists the NVEs, skipping malformed values.
func (s *Store) NVEs(ctx context.Context) ([]ila.NVE, error) {
	kvs, _, err := s.List(ctx, mapsrv.NVEPrefix)
	if err != nil {
		return nil, err
	}
	var out []ila.NVE
	for _, kv := range kvs {
		if n, err := mapsrv.DecodeNVE(kv.Key, kv.Value); err == nil {
			out = append(out, n.NVE)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
