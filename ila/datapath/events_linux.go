package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

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

// SetMonitor turns the monitor events on or off (ILA_F_MONITOR in the
// config: off, the rare paths cost one more config lookup, the hit path
// nothing). Programs adopted from an earlier process read the same pinned
// config.
func (d *Datapath) SetMonitor(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var c xlatIlaConfig
	if err := d.objs.IlaCfg.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read ila config: %w", err)
	}
	if on {
		c.Flags |= uint32(xlatIlaCfgFlagILA_F_MONITOR)
	} else {
		c.Flags &^= uint32(xlatIlaCfgFlagILA_F_MONITOR)
	}
	if err := d.objs.IlaCfg.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("write ila config: %w", err)
	}
	return nil
}

// ReadEvent blocks until the programs report a monitor event (only while
// SetMonitor(true)) or ctx ends. One reader at a time.
func (d *Datapath) ReadEvent(ctx context.Context) (Event, error) {
	d.evMu.Lock()
	defer d.evMu.Unlock()
	if err := ctx.Err(); err != nil {
		return Event{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = d.evrd.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		err := d.evrd.ReadInto(&rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return Event{}, ctx.Err()
		}
		if errors.Is(err, ringbuf.ErrFlushed) {
			continue
		}
		return Event{}, fmt.Errorf("read event ring buffer: %w", err)
	}
	var e xlatIlaMonEvent
	if len(rec.RawSample) < binary.Size(e) {
		return Event{}, fmt.Errorf("read event ring buffer: record of %d bytes", len(rec.RawSample))
	}
	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &e); err != nil {
		return Event{}, fmt.Errorf("read event ring buffer: %w", err)
	}
	ev := Event{Time: monoToWall(e.Ts), Type: EventType(e.Type), Reason: statName(int(e.Reason)), Ifindex: int(e.Ifindex), Len: int(e.Len),
		Locator: ila.Locator(he(e.Loc))}
	if e.Src != [2]uint64{} {
		ev.Src = ila.SIRPrefix(he(e.Src[0])).Addr(ila.Identifier(he(e.Src[1])))
	}
	if e.Dst != [2]uint64{} {
		ev.Dst = ila.SIRPrefix(he(e.Dst[0])).Addr(ila.Identifier(he(e.Dst[1])))
	}
	return ev, nil
}

// MonitorLost returns the events not reported (over the per-CPU rate
// limit, or the ring buffer full) since the maps were created.
func (d *Datapath) MonitorLost() (uint64, error) {
	var per []xlatIlaMonBudget
	if err := d.objs.IlaMonRl.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read monitor budget: %w", err)
	}
	var n uint64
	for _, b := range per {
		n += b.Lost
	}
	return n, nil
}

// monoToWall converts a bpf_ktime_get_ns stamp (CLOCK_MONOTONIC) to wall
// time.
func monoToWall(ns uint64) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano() - int64(ns)))
}
