package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReplayPrefix holds the registration server's sequence ceilings, one per
// key id: /ila/v1/replay/<key id in decimal> (docs/etcd-layout.md).
const ReplayPrefix = mapsrv.Prefix + "replay/"

// ReplayKey returns the key of keyID's sequence ceiling.
func ReplayKey(keyID uint32) string { return ReplayPrefix + strconv.FormatUint(uint64(keyID), 10) }

// SeqCeiling is the value at ReplayKey: every sequence number of KeyID at
// or below Ceiling may have been accepted by mapsrv and is refused after
// a restart. Ceiling is decimal text (a uint64 does not fit a JSON
// number's exact range).
type SeqCeiling struct {
	KeyID   uint32    `json:"key_id"`
	Ceiling string    `json:"ceiling"`
	Updated time.Time `json:"updated"`
}

// SeqStore keeps the registration server's sequence ceilings in etcd
// (regproto.SeqStore). Several mapsrv replicas may share it: a ceiling is
// only ever raised.
type SeqStore struct {
	KV clientv3.KV
}

var _ regproto.SeqStore = SeqStore{}

func decodeCeiling(key string, value []byte) (uint32, uint64, error) {
	var c SeqCeiling
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return 0, 0, fmt.Errorf("%s: %w: %w", key, mapsrv.ErrMalformed, err)
	}
	v, err := strconv.ParseUint(c.Ceiling, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: ceiling %q: %w", key, c.Ceiling, mapsrv.ErrMalformed)
	}
	if ReplayKey(c.KeyID) != key {
		return 0, 0, fmt.Errorf("%s: key id %d does not match the key: %w", key, c.KeyID, mapsrv.ErrMalformed)
	}
	return c.KeyID, v, nil
}

// LoadSeqCeilings implements regproto.SeqStore. A malformed value is an
// error: skipping it would reopen the replays it guards against.
func (s SeqStore) LoadSeqCeilings(ctx context.Context) (map[uint32]uint64, error) {
	resp, err := s.KV.Get(ctx, ReplayPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ReplayPrefix, err)
	}
	out := make(map[uint32]uint64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k, v, err := decodeCeiling(string(kv.Key), kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%w (delete or fix it: it guards against replayed registrations)", err)
		}
		out[k] = v
	}
	return out, nil
}

// SaveSeqCeiling implements regproto.SeqStore: it raises the stored
// ceiling of keyID to ceiling (it never lowers it).
func (s SeqStore) SaveSeqCeiling(ctx context.Context, keyID uint32, ceiling uint64) error {
	key := ReplayKey(keyID)
	value, err := json.Marshal(SeqCeiling{KeyID: keyID, Ceiling: strconv.FormatUint(ceiling, 10), Updated: time.Now().UTC()})
	if err != nil {
		return err
	}
	for {
		resp, err := s.KV.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("get %s: %w", key, err)
		}
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", 0)
		if len(resp.Kvs) == 1 {
			kv := resp.Kvs[0]
			// A malformed value is replaced: the new ceiling is as good
			// as any the process could have written.
			if _, v, err := decodeCeiling(key, kv.Value); err == nil && v >= ceiling {
				return nil
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		}
		tr, err := s.KV.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		if tr.Succeeded {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
