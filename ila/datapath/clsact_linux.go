package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// clsact is the fallback for kernels without tcx (before 6.6): the program
// runs as a direct-action bpf filter on a clsact qdisc. Filters live in
// the kernel until deleted, so they survive a daemon restart like pinned
// links; Attach replaces the filter in place with the new program.

const clsactPrio = 1

type clsactFilter struct {
	netns   string
	ifindex int
	egress  bool
}

func (c clsactFilter) parent() uint32 {
	if c.egress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

func (c clsactFilter) attach(prog *ebpf.Program, name string) error {
	return netns.DoPath(c.netns, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		q := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: c.ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		}
		if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
		f := &netlink.BpfFilter{
			FilterAttrs:  netlink.FilterAttrs{LinkIndex: c.ifindex, Parent: c.parent(), Handle: 1, Protocol: unix.ETH_P_ALL, Priority: clsactPrio},
			Fd:           prog.FD(),
			Name:         name,
			DirectAction: true,
		}
		if err := h.FilterReplace(f); err != nil {
			return fmt.Errorf("replace bpf filter: %w", err)
		}
		return nil
	})
}

func (c clsactFilter) detach() error {
	return netns.DoPath(c.netns, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: c.ifindex, Parent: c.parent(), Handle: 1, Protocol: unix.ETH_P_ALL, Priority: clsactPrio}}
		if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete bpf filter: %w", err)
		}
		return nil
	})
}
