package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// txnBuilder collects the conditions and writes of one transaction.
type txnBuilder struct {
	conds []Cond
	ops   []Op
	vals  []any // per op: the value put, for kvCache
	err   error
}

func (b *txnBuilder) cond(kv KV) { b.conds = append(b.conds, Cond{Key: kv.Key, Revision: kv.Revision}) }

func (b *txnBuilder) put(key string, v any) {
	val, err := encode(v)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.ops = append(b.ops, Op{Key: key, Value: val})
	b.vals = append(b.vals, v)
}

func (b *txnBuilder) del(key string) {
	b.ops = append(b.ops, Op{Key: key, Delete: true})
	b.vals = append(b.vals, nil)
}

func (s *Service) commit(ctx context.Context, b *txnBuilder, what string) error {
	if b.err != nil {
		return b.err
	}
	rev, err := s.store.Txn(ctx, b.conds, b.ops)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			s.kvs.conflicted(b.conds)
		}
		return s.storeErr(fmt.Errorf("%s: %w", what, err))
	}
	s.kvs.committed(rev, b.ops, b.vals)
	for _, op := range b.ops {
		if strings.HasPrefix(op.Key, NVEPrefix) || strings.HasPrefix(op.Key, DomainPrefix) {
			s.cache.invalidate()
			break
		}
	}
	return nil
}
