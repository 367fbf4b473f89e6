//go:build linux

package main

import (
	"context"
	"net"
	"sync"

	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/locator"
)

// dpEvents fits the datapath's monitor events to locator.EventSource,
// naming the interfaces (looked up in the node's namespace, cached).
type dpEvents struct {
	dp   *datapath.Datapath
	inNS func(func() error) error

	mu    sync.Mutex
	names map[int]string
}

func newDPEvents(dp *datapath.Datapath, inNS func(func() error) error) *dpEvents {
	return &dpEvents{dp: dp, inNS: inNS, names: map[int]string{}}
}

func (d *dpEvents) SetMonitor(on bool) error     { return d.dp.SetMonitor(on) }
func (d *dpEvents) MonitorLost() (uint64, error) { return d.dp.MonitorLost() }

func (d *dpEvents) ReadEvent(ctx context.Context) (locator.MonitorEvent, error) {
	e, err := d.dp.ReadEvent(ctx)
	if err != nil {
		return locator.MonitorEvent{}, err
	}
	return locator.MonitorEvent{Time: e.Time, Type: e.Type.String(), Reason: e.Reason, Ifindex: e.Ifindex, Iface: d.iface(e.Ifindex),
		Len: e.Len, Src: e.Src, Dst: e.Dst, Locator: e.Locator}, nil
}

// iface names ifindex (empty: unknown). Ports come and go with tasks, so
// a name is looked up again when the cached one no longer resolves.
func (d *dpEvents) iface(ifindex int) string {
	if ifindex <= 0 {
		return ""
	}
	d.mu.Lock()
	name, ok := d.names[ifindex]
	d.mu.Unlock()
	if ok {
		return name
	}
	_ = d.inNS(func() error {
		if ifc, err := net.InterfaceByIndex(ifindex); err == nil {
			name = ifc.Name
		}
		return nil
	})
	if name != "" {
		d.mu.Lock()
		if len(d.names) > 4096 {
			clear(d.names)
		}
		d.names[ifindex] = name
		d.mu.Unlock()
	}
	return name
}
