package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchOptions configures a Watcher. Zero values are defaults.
type WatchOptions struct {
	// Prefix is the root of the layout. Default mapsrv.Prefix ("/ila/v1/").
	Prefix string
	// Logger receives relists, retries and malformed values. Nil: discarded.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between retries while etcd
	// is unreachable. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// OnError, if set, is called for every etcd error the watcher retries
	// (for metrics).
	OnError func(error)
}

// Watcher follows the mapping: it lists everything, then watches from the
// listed revision, and lists again (delivering the difference) when the
// watch is compacted away or broken.
type Watcher struct {
	kv   clientv3.KV
	w    clientv3.Watcher
	opts WatchOptions
	log  *slog.Logger
}

// NewWatcher returns a Watcher reading through kv and w (usually the same
// *clientv3.Client).
func NewWatcher(kv clientv3.KV, w clientv3.Watcher, opts WatchOptions) *Watcher {
	if opts.Prefix == "" {
		opts.Prefix = mapsrv.Prefix
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = 5 * time.Second
		if opts.MaxBackoff < opts.MinBackoff {
			opts.MaxBackoff = opts.MinBackoff
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{kv: kv, w: w, opts: opts, log: log}
}

// known is what the watcher last delivered for a key.
type known struct {
	rev int64
	ev  ila.Event // the upsert delivered
}

// watchSession is the state of one Watch call.
type watchSession struct {
	*Watcher
	fn    func(ila.Event)
	known map[string]known
}

// Watch delivers every record as an upsert, then EventSynced with the
// revision of the list, then every change as it happens, each event with
// its store revision. When the watch breaks (compaction, lost leader,
// reconnect) it lists again and delivers deletes for records that vanished
// and upserts for records that changed, then EventSynced. Malformed values
// are logged and skipped (a consumer keeps what it had). fn is called from
// one goroutine. Watch retries with backoff while etcd is unreachable and
// returns nil when ctx is cancelled.
func (w *Watcher) Watch(ctx context.Context, fn func(ila.Event)) error {
	s := &watchSession{Watcher: w, fn: fn, known: make(map[string]known)}
	backoff := w.opts.MinBackoff
	for {
		rev, err := s.relist(ctx)
		if err == nil {
			start := time.Now()
			err = s.watch(ctx, rev)
			if time.Since(start) > 10*time.Second {
				backoff = w.opts.MinBackoff
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if w.opts.OnError != nil {
			w.opts.OnError(err)
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			w.log.Info("watch compacted; listing again", "err", err)
			continue
		}
		w.log.Warn("mapping watch interrupted; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, w.opts.MaxBackoff)
	}
}

// relist lists the prefix, delivers the difference from what was
// delivered before, then EventSynced. It returns the list revision.
//
// The list is decoded while it streams in, by one worker per CPU, and
// delivered in key order from this goroutine: at a million tasks,
// decoding is most of a node agent's start. A list that fails part way
// has delivered the upserts of the records read so far (each a value the
// store held at the list's revision); the next list delivers the rest and
// the deletes.
func (s *watchSession) relist(ctx context.Context) (int64, error) {
	old := s.known // read by the workers: not written until the list ends
	next := make(map[string]known, len(old))
	jobs := make(chan listJob)
	order := make(chan listJob, 64)
	var rev int64
	var listErr error
	go func() {
		defer close(order)
		defer close(jobs)
		rev, listErr = s.listRecords(ctx, func(kvs []*mvccpb.KeyValue) error {
			for len(kvs) > 0 {
				n := min(len(kvs), listJobSize)
				j := listJob{kvs: kvs[:n], out: make(chan []listItem, 1)}
				kvs = kvs[n:]
				select {
				case order <- j:
				case <-ctx.Done():
					return ctx.Err()
				}
				jobs <- j
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range jobs {
				j.out <- s.decodeJob(j.kvs, old)
			}
		})
	}
	for j := range order {
		for _, it := range <-j.out {
			switch {
			case it.same:
				next[it.key] = it.k
			case it.ok:
				next[it.key] = it.k
				s.fn(it.k.ev)
			default:
				if k, had := old[it.key]; had {
					next[it.key] = k // malformed: the consumer keeps what it had
				}
			}
		}
	}
	wg.Wait()
	if listErr != nil {
		for key, k := range next {
			old[key] = k
		}
		return 0, listErr
	}
	s.known = next
	for key, k := range old {
		if _, ok := next[key]; !ok {
			s.del(key, k, rev)
		}
	}
	s.fn(ila.Event{Type: ila.EventSynced, Revision: rev})
	return rev, nil
}

// recordPrefixes are the parts of the layout a Watcher delivers, in key
// order. The name and MAC indexes (two keys per task, beside the record)
// are not listed: at a million tasks they were two thirds of the keys.
var recordPrefixes = []string{"domains/", "map/", "nves/", "policies/"}

// listRecords lists the record prefixes under the root, all at the
// revision of the first, and returns it.
func (s *watchSession) listRecords(ctx context.Context, fn func([]*mvccpb.KeyValue) error) (int64, error) {
	var rev int64
	for _, p := range recordPrefixes {
		r, err := listEach(ctx, s.kv, s.opts.Prefix+p, rev, fn)
		if err != nil {
			return 0, err
		}
		rev = r
	}
	return rev, nil
}

// listJobSize is how many listed keys a decoding worker takes at a time.
const listJobSize = 256

// listJob is a run of listed keys; out receives them decoded.
type listJob struct {
	kvs []*mvccpb.KeyValue
	out chan []listItem
}

// listItem is a listed key: unchanged since the last list (same), decoded
// (ok), or neither (not a record, or malformed).
type listItem struct {
	key      string
	k        known
	same, ok bool
}

// decodeJob decodes a run of listed keys; old is only read.
func (s *watchSession) decodeJob(kvs []*mvccpb.KeyValue, old map[string]known) []listItem {
	items := make([]listItem, len(kvs))
	for i, kv := range kvs {
		it := &items[i]
		it.key = string(kv.Key)
		if k, ok := old[it.key]; ok && k.rev == kv.ModRevision {
			it.k, it.same = k, true
			continue
		}
		var ev ila.Event
		ev, it.ok = s.decode(it.key, kv.Value, kv.ModRevision)
		it.k = known{rev: kv.ModRevision, ev: ev}
	}
	return items
}

// watch follows changes after rev until the watch breaks.
func (s *watchSession) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := s.w.Watch(wctx, s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s from revision %d: %w", s.opts.Prefix, rev+1, err)
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.PUT:
				s.put(key, ev.Kv.Value, ev.Kv.ModRevision)
			case mvccpb.DELETE:
				if k, ok := s.known[key]; ok {
					s.del(key, k, ev.Kv.ModRevision)
				}
			}
			rev = ev.Kv.ModRevision
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watch %s: channel closed", s.opts.Prefix)
}

// decode turns a stored value into an upsert event. ok is false for keys
// that are not records (indexes) and for malformed values.
func (s *watchSession) decode(key string, value []byte, rev int64) (ila.Event, bool) {
	rel := strings.TrimPrefix(key, s.opts.Prefix)
	// Decoders check keys in the canonical layout.
	canon := mapsrv.Prefix + rel
	var ev ila.Event
	var err error
	switch {
	case strings.HasPrefix(rel, "map/"):
		var rec mapsrv.TaskRecord
		if rec, err = mapsrv.DecodeTaskFast(canon, value); err == nil {
			t := rec.Task
			ev = ila.Event{Type: ila.EventTaskUpsert, Revision: rev, Task: &t}
		}
	case strings.HasPrefix(rel, "nves/"):
		var rec mapsrv.NVERecord
		if rec, err = mapsrv.DecodeNVE(canon, value); err == nil {
			n := rec.NVE
			ev = ila.Event{Type: ila.EventNVEUpsert, Revision: rev, NVE: &n}
		}
	case strings.HasPrefix(rel, "policies/"):
		var p ila.Policy
		if p, err = mapsrv.DecodePolicy(canon, value); err == nil {
			ev = ila.Event{Type: ila.EventPolicyUpsert, Revision: rev, Policy: &p}
		}
	case strings.HasPrefix(rel, "domains/"):
		var d ila.Domain
		if d, err = mapsrv.DecodeDomain(canon, value); err == nil {
			ev = ila.Event{Type: ila.EventDomainUpsert, Revision: rev, Domain: &d}
		}
	default:
		return ev, false
	}
	if err != nil {
		s.log.Warn("skipping malformed stored value", "key", key, "revision", rev, "err", err)
		return ev, false
	}
	return ev, true
}

func (s *watchSession) put(key string, value []byte, rev int64) {
	ev, ok := s.decode(key, value, rev)
	if !ok {
		return
	}
	s.known[key] = known{rev: rev, ev: ev}
	s.fn(ev)
}

func (s *watchSession) del(key string, k known, rev int64) {
	delete(s.known, key)
	ev := k.ev
	ev.Revision = rev
	switch ev.Type {
	case ila.EventTaskUpsert:
		ev.Type = ila.EventTaskDelete
	case ila.EventNVEUpsert:
		ev.Type = ila.EventNVEDelete
	case ila.EventDomainUpsert:
		ev.Type = ila.EventDomainDelete
	case ila.EventPolicyUpsert:
		ev.Type = ila.EventPolicyDelete
	}
	s.fn(ev)
}
