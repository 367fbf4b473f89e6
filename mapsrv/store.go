package mapsrv

import "context"

// KV is one stored key with its value and modification revision.
// A missing key has Revision 0 and a nil Value.
type KV struct {
	Key      string
	Value    []byte
	Revision int64 // etcd ModRevision; 0 = absent
}

// Cond requires Key to have been last modified at Revision (0: absent).
type Cond struct {
	Key      string
	Revision int64
}

// Op is one write of a transaction: a put, or a delete when Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Store is the durable state under the mapping service. Implementations:
// mapsrv/etcdstore (etcd) and mapsrvtest (in memory).
type Store interface {
	// Get returns the keys in order; missing keys come back with
	// Revision 0. All keys are read at one revision.
	Get(ctx context.Context, keys ...string) ([]KV, error)
	// List returns every key under prefix and the store revision of the read.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies ops atomically if every cond holds and returns the new
	// store revision; ErrConflict (wrapped) if a cond does not hold.
	Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error)
}
