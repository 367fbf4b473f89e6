package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Batching (group commit) of conditional transactions.
//
// Concurrent Txn calls are committed together: one etcd transaction whose
// operations are the callers' transactions, each nested with its own
// comparisons, so that each one succeeds or fails on its own exactly as
// if it had been sent alone. etcd evaluates every nested comparison
// against the state before the outer transaction, so a batch only holds
// calls that do not touch a key another call of the batch writes; the
// batch is then equivalent to running its calls one after the other in any
// order. Every write of a batch gets the batch's revision, which each
// successful call returns.
//
// At most batchRunners batches are in flight; a call arriving while they
// are all busy waits for the next batch. A lone call goes out at once as a
// plain transaction, so batching adds no latency when there is no
// concurrency.

const (
	// DefaultMaxBatch is the default bound on the calls of one batch.
	DefaultMaxBatch = 32
	// batchRunners bounds the batches in flight.
	batchRunners = 2
	// maxBatchBytes bounds the keys and values of one batch, far below
	// etcd's default request limit (1.5 MiB).
	maxBatchBytes = 256 << 10
	// maxNestedOps bounds the comparisons and operations of a call that
	// may be batched: etcd's --max-txn-ops (default 128) bounds each
	// nested transaction by what the outer one leaves (128 - batch size).
	maxNestedOps = 16
)

type txnResult struct {
	rev int64
	ok  bool
	err error
}

// txnCall is one Txn call.
type txnCall struct {
	ctx    context.Context
	cmps   []clientv3.Cmp
	ops    []clientv3.Op
	keys   []string // compared or written
	writes []string // written
	size   int
	done   chan txnResult // buffered: the runner never blocks on it
}

// batcher groups concurrent calls into batches.
type batcher struct {
	kv  clientv3.KV
	max int

	mu      sync.Mutex
	queue   []*txnCall
	running int

	batches, batched atomic.Uint64 // batches of more than one call, and their calls
}

func batchable(c *txnCall) bool {
	return len(c.cmps) <= maxNestedOps && len(c.ops) <= maxNestedOps && c.size <= maxBatchBytes/4
}

// do commits c, alone or in a batch, and returns its result.
func (b *batcher) do(c *txnCall) txnResult {
	c.done = make(chan txnResult, 1)
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running < batchRunners {
		b.running++
		batch := b.take()
		b.mu.Unlock()
		go b.run(batch)
	} else {
		b.mu.Unlock()
	}
	select {
	case r := <-c.done:
		return r
	case <-c.ctx.Done():
		// Like a canceled etcd call, the transaction may still apply.
		return txnResult{err: fmt.Errorf("etcd txn: %w", c.ctx.Err())}
	}
}

// run commits batches until the queue is empty. The first batch may be
// empty (take answered and dropped calls whose context was done).
func (b *batcher) run(batch []*txnCall) {
	for {
		if len(batch) > 0 {
			b.commit(batch)
		}
		b.mu.Lock()
		batch = b.take()
		if len(batch) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// take removes the next batch from the queue: calls in arrival order that
// touch no key another selected call writes, up to max calls and
// maxBatchBytes. The first call is always taken. Calls whose context is
// done are answered and dropped. b.mu is held.
func (b *batcher) take() []*txnCall {
	var (
		batch   []*txnCall
		rest    = b.queue[:0]
		touched map[string]bool
		written map[string]bool
		size    int
	)
	for i, c := range b.queue {
		if c.ctx.Err() != nil {
			c.done <- txnResult{err: fmt.Errorf("etcd txn: %w", c.ctx.Err())}
			continue
		}
		if len(batch) == b.max || (len(batch) > 0 && size+c.size > maxBatchBytes) {
			rest = append(rest, b.queue[i:]...)
			break
		}
		if len(batch) > 0 && !compatible(c, touched, written) {
			rest = append(rest, c)
			continue
		}
		if touched == nil {
			touched, written = make(map[string]bool), make(map[string]bool)
		}
		for _, k := range c.keys {
			touched[k] = true
		}
		for _, k := range c.writes {
			written[k] = true
		}
		size += c.size
		batch = append(batch, c)
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

func compatible(c *txnCall, touched, written map[string]bool) bool {
	for _, k := range c.keys {
		if written[k] {
			return false
		}
	}
	for _, k := range c.writes {
		if touched[k] {
			return false
		}
	}
	return true
}

// commit sends one batch and answers its calls. A batch may be empty:
// every call taken was canceled while queued (take answered it).
func (b *batcher) commit(batch []*txnCall) {
	if len(batch) == 0 {
		return
	}
	if len(batch) == 1 {
		c := batch[0]
		c.done <- commitOne(c.ctx, b.kv, c)
		return
	}
	// The batch lives as long as one of its callers waits for it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	var live atomic.Int32
	live.Store(int32(len(batch)))
	ops := make([]clientv3.Op, len(batch))
	for i, c := range batch {
		stop := context.AfterFunc(c.ctx, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
		ops[i] = clientv3.OpTxn(c.cmps, c.ops, nil)
	}
	resp, err := b.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil && (errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrDuplicateKey)) {
		// The cluster's limits are lower than the defaults, or a call
		// is refused on its own: send the calls one by one, so that
		// each gets its own answer.
		for _, c := range batch {
			c.done <- commitOne(c.ctx, b.kv, c)
		}
		return
	}
	if err != nil {
		for _, c := range batch {
			c.done <- txnResult{err: fmt.Errorf("etcd txn (batch of %d): %w", len(batch), err)}
		}
		return
	}
	b.batches.Add(1)
	b.batched.Add(uint64(len(batch)))
	for i, c := range batch {
		var r txnResult
		if i < len(resp.Responses) {
			if t := resp.Responses[i].GetResponseTxn(); t != nil && t.Succeeded {
				r = txnResult{rev: resp.Header.Revision, ok: true}
			}
		}
		c.done <- r
	}
}

// commitOne sends c as a plain transaction.
func commitOne(ctx context.Context, kv clientv3.KV, c *txnCall) txnResult {
	resp, err := kv.Txn(ctx).If(c.cmps...).Then(c.ops...).Commit()
	if err != nil {
		return txnResult{err: fmt.Errorf("etcd txn: %w", err)}
	}
	return txnResult{rev: resp.Header.Revision, ok: resp.Succeeded}
}
