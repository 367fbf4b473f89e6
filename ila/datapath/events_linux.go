package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/ilamesh/ilamesh/ila"
)

// ReadMiss blocks until the programs report a miss or ctx ends.
func (d *Datapath) ReadMiss(ctx context.Context) (Miss, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	if err := ctx.Err(); err != nil {
		return Miss{}, err
	}
	// Flush wakes a blocked Read (SetDeadline cannot: Read holds the
	// reader's lock while it waits).
	stop := context.AfterFunc(ctx, func() { _ = d.rd.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		err := d.rd.ReadInto(&rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return Miss{}, ctx.Err()
		}
		if errors.Is(err, ringbuf.ErrFlushed) {
			continue
		}
		return Miss{}, fmt.Errorf("read miss ring buffer: %w", err)
	}
	if len(rec.RawSample) < 16 {
		return Miss{}, fmt.Errorf("read miss ring buffer: record of %d bytes", len(rec.RawSample))
	}
	return Miss{
		SIR:        ila.SIRPrefix(binary.BigEndian.Uint64(rec.RawSample[0:8])),
		Identifier: ila.Identifier(binary.BigEndian.Uint64(rec.RawSample[8:16])),
	}, nil
}

// Stats sums the per-CPU counters.
func (d *Datapath) Stats() (Stats, error) {
	var per []xlatIlaCounters
	if err := d.objs.IlaStats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("read counters: %w", err)
	}
	vals := make([]uint64, len(statNames))
	for _, c := range per {
		for i := range vals {
			if i < len(c.V) {
				vals[i] += c.V[i]
			}
		}
	}
	return statsFrom(vals, d.full.Load()), nil
}
