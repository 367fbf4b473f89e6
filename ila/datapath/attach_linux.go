package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/ilamesh/ilamesh/internal/netns"
	"golang.org/x/sys/unix"
)

// program returns the programs for a role: ingress and (task only) egress.
func (d *Datapath) programs(r Role) (ingress, egress *ebpf.Program) {
	switch r {
	case RoleTask:
		return d.objs.IlaTask, d.objs.IlaTaskEgress
	case RoleUplink:
		return d.objs.IlaUplink, nil
	case RoleRouter:
		return d.objs.IlaRouter, nil
	}
	return nil, nil
}

type attachPoint struct {
	name string // pin and map key
	prog *ebpf.Program
	at   ebpf.AttachType
}

// points resolves the interface (in its namespace) and names the hooks.
func (d *Datapath) points(a Attachment) (ifindex int, pts []attachPoint, err error) {
	ifindex = a.Ifindex
	var nsIno uint64
	err = netns.DoPath(a.NetNS, func() error {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
			return fmt.Errorf("stat netns: %w", err)
		}
		nsIno = st.Ino
		if ifindex == 0 {
			ifi, err := net.InterfaceByName(a.Ifname)
			if err != nil {
				return err
			}
			ifindex = ifi.Index
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("attach %s: %w", a, err)
	}
	in, eg := d.programs(a.Role)
	pts = append(pts, attachPoint{fmt.Sprintf("tcx_%d_%d_ingress", nsIno, ifindex), in, ebpf.AttachTCXIngress})
	if eg != nil {
		pts = append(pts, attachPoint{fmt.Sprintf("tcx_%d_%d_egress", nsIno, ifindex), eg, ebpf.AttachTCXEgress})
	}
	return ifindex, pts, nil
}

func (d *Datapath) pinFile(name string) string {
	if d.cfg.PinPath == "" {
		return ""
	}
	return filepath.Join(d.cfg.PinPath, linkDir, name)
}

// Attach runs the role's programs on the interface. With a PinPath the
// links are pinned; if a pinned link for the same hook exists (left by a
// previous process) its program is replaced atomically.
func (d *Datapath) Attach(a Attachment) error {
	if err := a.validate(); err != nil {
		return err
	}
	if a.Role == RoleRouter && !d.cfg.Router {
		return fmt.Errorf("attach %s: router role needs Config.Router", a)
	}
	ifindex, pts, err := d.points(a)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range pts {
		if l, ok := d.links[p.name]; ok {
			if err := l.Update(p.prog); err != nil {
				return fmt.Errorf("attach %s: update %s: %w", a, p.at, err)
			}
			continue
		}
		if pf := d.pinFile(p.name); pf != "" {
			if l, err := link.LoadPinnedLink(pf, nil); err == nil {
				if err := l.Update(p.prog); err != nil {
					l.Close()
					return fmt.Errorf("attach %s: update pinned %s: %w", a, p.at, err)
				}
				d.links[p.name] = l
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("attach %s: load pinned link: %w", a, err)
			}
		}
		var l link.Link
		err := errors.ErrUnsupported
		filter := d.forceClsact || a.Role == RoleTask && !d.cfg.TaskTCX
		if !filter {
			err = netns.DoPath(a.NetNS, func() error {
				var err error
				l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: p.at})
				return err
			})
		}
		if filter || errors.Is(err, ebpf.ErrNotSupported) {
			// A task port (Config.TaskTCX), or no tcx (kernel < 6.6):
			// clsact + direct-action bpf filter.
			f := clsactFilter{netns: a.NetNS, ifindex: ifindex, egress: p.at == ebpf.AttachTCXEgress}
			if err := f.attach(p.prog, p.name); err != nil {
				return fmt.Errorf("attach %s: clsact fallback: %w", a, err)
			}
			d.filters[p.name] = f
			continue
		}
		if err != nil {
			return fmt.Errorf("attach %s: tcx %s: %w", a, p.at, err)
		}
		if pf := d.pinFile(p.name); pf != "" {
			if err := l.Pin(pf); err != nil {
				l.Close()
				return fmt.Errorf("attach %s: pin link: %w", a, err)
			}
		}
		d.links[p.name] = l
	}
	return nil
}

// Detach removes the role's programs from the interface (and their pins).
func (d *Datapath) Detach(a Attachment) error {
	if err := a.validate(); err != nil {
		return err
	}
	ifindex, pts, err := d.points(a)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, p := range pts {
		if f, ok := d.filters[p.name]; ok {
			delete(d.filters, p.name)
			if err := f.detach(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
			}
			continue
		}
		l, ok := d.links[p.name]
		if !ok {
			pf := d.pinFile(p.name)
			if pf != "" {
				l, err = link.LoadPinnedLink(pf, nil)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("detach %s: load pinned link: %w", a, err))
					continue
				}
			}
			if l == nil {
				if a.Role == RoleTask {
					// A task port's filter attached by an earlier
					// process (not recorded here); none is fine.
					f := clsactFilter{netns: a.NetNS, ifindex: ifindex, egress: p.at == ebpf.AttachTCXEgress}
					_ = f.detach()
				}
				continue
			}
		}
		delete(d.links, p.name)
		if d.cfg.PinPath != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: unpin: %w", a, err))
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
