package regproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// SeqReserve is how far above a sequence number a Server's SeqStore
// ceiling is set when the number passes the stored ceiling. Senders seed
// their counters from their clocks and add one per message, so one write
// covers a sender's run until it restarts; a sender refused after the
// server restarts jumps past the ceiling (ResyncAhead).
const SeqReserve = 10 * time.Second

// ResyncAhead is how far above its clock (in Unix nanoseconds) a Client
// moves its sequence counter after a replay refusal: past any ceiling
// (SeqReserve) the server set for its earlier messages, and within the
// server's DefaultMaxAhead for a sender whose clock is up to DefaultSkew
// ahead.
const ResyncAhead = SeqReserve + 5*time.Second

// SeqStore keeps, per key id, a ceiling above every sequence number a
// Server has passed to its Handler, so that a restarted Server refuses
// the replay of a request its previous run accepted (the replay window
// itself lives in memory). Implementations must only ever raise a
// ceiling.
type SeqStore interface {
	// LoadSeqCeilings returns the stored ceilings.
	LoadSeqCeilings(ctx context.Context) (map[uint32]uint64, error)
	// SaveSeqCeiling stores ceiling for keyID.
	SaveSeqCeiling(ctx context.Context, keyID uint32, ceiling uint64) error
}

// ceilings tracks the stored ceilings of a Server with a SeqStore.
type ceilings struct {
	store SeqStore
	mu    sync.Mutex
	keys  map[uint32]*ceiling
}

type ceiling struct {
	mu sync.Mutex
	v  uint64
}

// load reads the stored ceilings and makes window refuse what they cover.
func (c *ceilings) load(ctx context.Context, window *ReplayWindow) error {
	m, err := c.store.LoadSeqCeilings(ctx)
	if err != nil {
		return fmt.Errorf("load sequence ceilings: %w", err)
	}
	c.keys = make(map[uint32]*ceiling, len(m))
	for k, v := range m {
		c.keys[k] = &ceiling{v: v}
	}
	window.Restore(m)
	return nil
}

// cover makes sure the stored ceiling of keyID is at least seq, raising
// it to seq+SeqReserve when it is not. Calls for different keys run in
// parallel.
func (c *ceilings) cover(ctx context.Context, keyID uint32, seq uint64) error {
	c.mu.Lock()
	e := c.keys[keyID]
	if e == nil {
		e = &ceiling{}
		c.keys[keyID] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq <= e.v {
		return nil
	}
	v := seq + uint64(SeqReserve)
	if v < seq {
		v = ^uint64(0)
	}
	if err := c.store.SaveSeqCeiling(ctx, keyID, v); err != nil {
		return fmt.Errorf("save sequence ceiling of key id %d: %w", keyID, err)
	}
	e.v = v
	return nil
}

// FileSeqStore is a SeqStore in a file (JSON: key id -> ceiling as
// decimal text), for a receiver without etcd: an NVE's receiver of
// notifications. Each save rewrites the file atomically (write, sync,
// rename). The file's directory must exist.
type FileSeqStore struct {
	Path string

	mu sync.Mutex
}

// LoadSeqCeilings implements SeqStore. A missing file holds no ceiling; a
// file that does not decode is an error.
func (f *FileSeqStore) LoadSeqCeilings(context.Context) (map[uint32]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *FileSeqStore) load() (map[uint32]uint64, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[uint32]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sequence ceilings: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sequence ceilings %s: %w (delete or fix it)", f.Path, err)
	}
	out := make(map[uint32]uint64, len(m))
	for k, v := range m {
		id, err1 := strconv.ParseUint(k, 10, 32)
		c, err2 := strconv.ParseUint(v, 10, 64)
		if err1 != nil || err2 != nil || id == 0 {
			return nil, fmt.Errorf("sequence ceilings %s: entry %q: %q: want a key id and a decimal ceiling (delete or fix the file)", f.Path, k, v)
		}
		out[uint32(id)] = c
	}
	return out, nil
}

// SaveSeqCeiling implements SeqStore (it never lowers a ceiling).
func (f *FileSeqStore) SaveSeqCeiling(_ context.Context, keyID uint32, ceiling uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.load()
	if err != nil {
		m = map[uint32]uint64{} // a broken file is replaced
	}
	if m[keyID] >= ceiling {
		return nil
	}
	m[keyID] = ceiling
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strconv.FormatUint(uint64(k), 10)] = strconv.FormatUint(v, 10)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("sequence ceilings: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("sequence ceilings: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sequence ceilings: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("sequence ceilings: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("sequence ceilings: %w", err)
	}
	return nil
}
