//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// Move moves a task to another NVE.
//
// hot: the NVE end of the task's veth is carried to the new NVE's namespace
// and brought up there (the task's own stack, addresses and sockets carry
// on, as a live-migrated VM's would), then the move is committed to the
// mapping service. cold: the task's link goes down first (the task is
// suspended), the move is committed as cold, the link is carried over and
// comes back up. warm behaves as cold in the lab (there is no state to
// mirror beyond what the task keeps).
//
// mapsrv is asked first (a move Check): its refusal (flap damping, mapsrv
// down) comes before anything changes. A dual move that fails after that
// is undone (undoDual): it leaves nothing behind and does not happen
// later; a cold move that fails before its commit brings the task's link
// back up.
func (l *Lab) Move(ctx context.Context, taskName, toName, mode string) (*MoveResult, error) {
	return l.MoveVia(ctx, taskName, toName, mode, ViaAuto)
}

// MoveVia is Move with a choice of how a hot move carries the link.
func (l *Lab) MoveVia(ctx context.Context, taskName, toName, mode, via string) (*MoveResult, error) {
	return l.moveVia(ctx, taskName, toName, mode, via, nil)
}

// MoveHeld is a warm or cold Move that calls held once the mapping service
// has suspended the task, before its link comes over to the destination:
// the suspended state can be looked at there. An error from held ends the
// move (the task stays suspended at its old NVE).
func (l *Lab) MoveHeld(ctx context.Context, taskName, toName, mode string, held func() error) (*MoveResult, error) {
	if mode != MoveWarm && mode != MoveCold {
		return nil, fmt.Errorf("move held: mode %q: want warm or cold", mode)
	}
	return l.moveVia(ctx, taskName, toName, mode, ViaCarry, held)
}

// MoveDualHeld is a hot dual Move that calls held once the new link is up
// and the destination holds the task in standby with the task's routes
// switched to it, just before the commit: a test can fail mapsrv there.
// An error from held, like any failure before the commit, undoes the
// move.
func (l *Lab) MoveDualHeld(ctx context.Context, taskName, toName string, held func() error) (*MoveResult, error) {
	return l.moveVia(ctx, taskName, toName, MoveHot, ViaDual, held)
}

func (l *Lab) moveVia(ctx context.Context, taskName, toName, mode, via string, held func() error) (*MoveResult, error) {
	switch via {
	case "", ViaAuto:
		via = ViaCarry
		if (mode == MoveHot || mode == "") && !l.cfg.UnderlayOnly {
			via = ViaDual
		}
	case ViaCarry:
	case ViaDual:
		if mode != MoveHot && mode != "" {
			return nil, fmt.Errorf("move via %s: only for hot moves", via)
		}
	default:
		return nil, fmt.Errorf("move via %q: want auto, carry or dual", via)
	}
	if mode == "" {
		mode = MoveHot
	}
	switch mode {
	case MoveHot, MoveWarm, MoveCold:
	default:
		return nil, fmt.Errorf("move mode %q: want hot, warm or cold", mode)
	}
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return nil, err
	}
	to, err := l.topo.NVEByName(toName)
	if err != nil {
		return nil, err
	}
	from, err := l.topo.NVEByName(task.NVE)
	if err != nil {
		return nil, err
	}
	if from.Name == to.Name {
		return nil, fmt.Errorf("move %s: already on %s", taskName, toName)
	}
	if !l.cfg.UnderlayOnly {
		// mapsrv's answer (flap damping, the destination, mapsrv itself
		// down) comes before any link changes.
		if err := l.checkMove(ctx, task, to, mode); err != nil {
			return nil, err
		}
	}
	if task.VM != nil {
		if mode != MoveHot {
			return nil, fmt.Errorf("move VM %s: a VM moves by live migration (hot), not %s", taskName, mode)
		}
		r := &MoveResult{Task: taskName, From: from.Name, To: to.Name, Mode: "live", Via: "qemu", Start: time.Now()}
		vr, err := l.migrateVM(ctx, task, from, to, r)
		r.VM, r.Done = vr, time.Now()
		return r, errors.Join(err, l.save())
	}
	r := &MoveResult{Task: taskName, From: from.Name, To: to.Name, Mode: mode, Via: via, Start: time.Now()}
	cold := mode != MoveHot
	if cold {
		if err := l.suspend(ctx, task, from); err != nil {
			return r, err
		}
		defer func() {
			if r.Committed.IsZero() {
				// Refused or failed: the task's link comes back up
				// where it was.
				_ = l.resume(task, from)
			}
		}()
	}
	switch {
	case l.cfg.UnderlayOnly:
		if err := l.moveLink(task, from, to); err != nil {
			return r, err
		}
		r.LinkMoved = time.Now()
		if err := l.plainMove(task, to); err != nil {
			return r, err
		}
		r.Committed = time.Now()
	case mode == MoveHot && via == ViaDual:
		if err := l.moveDual(ctx, task, from, to, r, held); err != nil {
			return r, err
		}
	case mode == MoveHot:
		// The prepare/commit path of a live migration (carry_linux.go).
		if err := l.moveCarry(ctx, task, from, to, r); err != nil {
			return r, err
		}
	default:
		// Cold/warm: mapsrv suspends the task, the link comes over, the
		// task registers at its destination, which resumes it.
		at, err := l.apiMove(ctx, task, to, mode)
		if err != nil {
			return r, err
		}
		r.Committed = at
		if held != nil {
			if err := held(); err != nil {
				return r, err
			}
		}
		if err := l.moveLink(task, from, to); err != nil {
			return r, err
		}
		r.LinkMoved = time.Now()
		if err := l.attachTask(ctx, task, to.Name); err != nil {
			return r, err
		}
		r.Attached = time.Now()
	}
	task.NVE = to.Name
	if task.IPv4.IsValid() && !l.cfg.UnderlayOnly {
		// A migrated VM announces itself with a gratuitous ARP.
		if err := l.SendGARP(task.Name); err != nil {
			return r, err
		}
	}
	if err := l.save(); err != nil {
		return r, err
	}
	r.Done = time.Now()
	return r, nil
}

// checkMove asks mapsrv whether it would accept the move now (Check: it
// changes nothing), so that a refusal comes before anything changes.
func (l *Lab) checkMove(ctx context.Context, task *Task, to *NVE, mode string) error {
	m, err := ila.ParseMoveMode(mode)
	if err != nil {
		return err
	}
	c, err := l.api()
	if err != nil {
		return err
	}
	if _, err := c.Move(ctx, task.Tenant, task.Name, mapsrv.MoveBody{To: to.Name, Mode: m, Check: true}); err != nil {
		return fmt.Errorf("move %s to %s: refused before anything changed: %w", task.Name, to.Name, err)
	}
	return nil
}

// resume brings the task's link back up at its NVE (a cold move that did
// not happen).
func (l *Lab) resume(task *Task, from *NVE) error {
	nn, err := l.node(from.Netns)
	if err != nil {
		return err
	}
	return nn.up(task.Ifname)
}

// suspend takes the task's link down at its NVE (cold move).
func (l *Lab) suspend(ctx context.Context, task *Task, from *NVE) error {
	nn, err := l.node(from.Netns)
	if err != nil {
		return err
	}
	link, err := nn.link(task.Ifname)
	if err != nil {
		return err
	}
	if err := nn.h.LinkSetDown(link); err != nil {
		return fmt.Errorf("suspend %s on %s: %w", task.Name, from.Name, err)
	}
	return nil
}

// moveDual is a make-before-break hot move at the link: a second veth joins
// the task to the new NVE; the task's routes switch to it (through the new
// NVE's gateway address, so the new NVE forwards even before its ilad has
// attached the port); the new NVE's ilad attaches and registers the task,
// which commits the move; then the old link is removed (the old NVE
// redirects whatever still arrives for the task in flight). An IPv4 task
// (see moveDualIPv4) switches its subnet route and announces itself on the
// new link instead.
//
// The lab, as the orchestrator, first tells mapsrv to expect the task at
// the new NVE (expectMove): that is what justifies the commit's claim.
func (l *Lab) moveDual(ctx context.Context, task *Task, from, to *NVE, r *MoveResult, held func() error) error {
	drop, err := l.expectMove(ctx, task, to, time.Minute)
	if err != nil {
		return err
	}
	if err := l.moveDualExpected(ctx, task, from, to, r, held); err != nil {
		drop()
		return err
	}
	return nil
}

func (l *Lab) moveDualExpected(ctx context.Context, task *Task, from, to *NVE, r *MoveResult, held func() error) error {
	tn, err := l.node(task.Netns)
	if err != nil {
		return err
	}
	bn, err := l.node(to.Netns)
	if err != nil {
		return err
	}
	oldIf := task.taskIf()
	newIf := "eth1"
	if oldIf == "eth1" {
		newIf = "eth0"
	}
	if l.cfg.UnderlayOnly {
		return fmt.Errorf("move via dual: only in an ILA lab (use --via carry)")
	}
	if err := bn.veth(task.Ifname, gatewayMAC(), tn, newIf, mustMAC(task.MAC)); err != nil {
		return err
	}
	err = l.switchDual(ctx, task, tn, bn, to, newIf, r, held)
	if err == nil {
		return l.dropOldLink(task, tn, oldIf, newIf)
	}
	// A failed move leaves nothing behind and does not happen later.
	committed, uerr := l.undoDual(ctx, task, tn, to, oldIf, newIf)
	if committed {
		// The claim was taken after all (its answer came late): the move
		// happened; finish it.
		return l.dropOldLink(task, tn, oldIf, newIf)
	}
	return errors.Join(err, uerr)
}

// switchDual is the part of moveDual between the new link and the commit.
func (l *Lab) switchDual(ctx context.Context, task *Task, tn, bn *node, to *NVE, newIf string, r *MoveResult, held func() error) error {
	if task.IPv4.IsValid() {
		return l.moveDualIPv4(ctx, task, tn, bn, to, newIf, r, held)
	}
	// The gateway address ilad gives every port, so that the task's
	// neighbour discovery for its router is answered right away.
	if err := bn.addr(task.Ifname, netip.PrefixFrom(routerLL, 64)); err != nil {
		return err
	}
	if err := bothUp(ctx, tn, newIf, bn, task.Ifname); err != nil {
		return err
	}
	// The gateway MAC is the same anycast MAC on every NVE: no need to
	// wait for neighbour discovery on the new link.
	if err := tn.neighReachable(newIf, routerLL, gatewayMAC()); err != nil {
		return err
	}
	if err := tn.addrFlags(newIf, netip.PrefixFrom(task.SIR, 64), unix.IFA_F_NODAD|unix.IFA_F_NOPREFIXROUTE); err != nil {
		return err
	}
	r.LinkMoved = time.Now()
	// Make before break: the new NVE prepares the port and local delivery
	// (standby: no registration yet), the task's routes switch to the new
	// link, and only then does the registration at the new NVE commit the
	// move. The task never sends through a port whose NVE has already
	// dropped its source binding, and packets for it reach it over either
	// link until the old one goes.
	if err := l.attachStandby(ctx, task, to.Name); err != nil {
		return err
	}
	for _, dst := range []netip.Prefix{netip.MustParsePrefix("::/0"), SIRPrefix} {
		if err := tn.routeMetric(dst, routerLL, newIf, 100); err != nil {
			return err
		}
	}
	if held != nil {
		if err := held(); err != nil {
			return err
		}
	}
	return l.commitAt(ctx, task, to, r)
}

// undoDual takes back a dual move that failed before its commit: the new
// NVE's ilad aborts the task (a standby, or a commit whose claim mapsrv
// has not accepted: its registration stops, so the move does not happen
// later), the new link goes (and the task's routes through it with it),
// and an IPv4 task's subnet route returns to the old link. committed
// reports that the claim had been accepted after all (abort refused: the
// task is active there): the move happened and nothing is undone.
func (l *Lab) undoDual(ctx context.Context, task *Task, tn *node, to *NVE, oldIf, newIf string) (committed bool, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c, err := locator.NewClient(l.iladSock(to.Name))
	if err != nil {
		return false, err
	}
	var errs []error
	switch err := c.Abort(ctx, task.Name); {
	case errors.Is(err, locator.ErrNotPrepared):
		return true, nil
	case err != nil && !errors.Is(err, locator.ErrNotFound):
		errs = append(errs, fmt.Errorf("abort %s at %s: %w", task.Name, to.Name, err))
	}
	if link, err := tn.link(newIf); err == nil {
		if err := tn.h.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("remove %s of %s: %w", newIf, task.Name, err))
		}
	}
	if task.IPv4.IsValid() {
		if err := tn.route(IPv4Net, netip.Addr{}, oldIf); err != nil {
			errs = append(errs, err)
		}
		if err := l.sendARP(task, oldIf, 1, nil, task.IPv4, task.IPv4); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return false, fmt.Errorf("undo the failed move of %s: %w", task.Name, errors.Join(errs...))
	}
	return false, nil
}

// dropOldLink ends a dual move: the task's old link goes.
func (l *Lab) dropOldLink(task *Task, tn *node, oldIf, newIf string) error {
	// Let the old NVE install its in-flight redirect before its port goes.
	time.Sleep(50 * time.Millisecond)
	old, err := tn.link(oldIf)
	if err != nil {
		return err
	}
	if err := tn.h.LinkDel(old); err != nil {
		return fmt.Errorf("remove %s of %s: %w", oldIf, task.Name, err)
	}
	task.TaskIfname = newIf
	return nil
}

// moveDualIPv4 is the IPv4 tenant's half of moveDual, once the new link
// exists: the new NVE's ilad prepares the port in standby (it joins the
// tenant's bridge, the ARP responder starts on it), the task takes its
// address on the new link and its subnet route switches there, a
// gratuitous ARP on the new link makes the new NVE's bridge deliver the
// task's MAC to it before anything commits, and only then the registration
// at the new NVE commits the move. Until the old link goes, the task
// accepts packets on either (reverse-path filtering off, as on any
// multi-homed host); frames for it reach it through whichever NVE the
// mapping named when they were sent.
func (l *Lab) moveDualIPv4(ctx context.Context, task *Task, tn, bn *node, to *NVE, newIf string, r *MoveResult, held func() error) error {
	if err := bothUp(ctx, tn, newIf, bn, task.Ifname); err != nil {
		return err
	}
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf." + newIf + ".rp_filter", "net.ipv4.conf." + task.taskIf() + ".rp_filter"} {
		if err := tn.sysctl(k, "0"); err != nil {
			return err
		}
	}
	r.LinkMoved = time.Now()
	if err := l.attachStandby(ctx, task, to.Name); err != nil {
		return err
	}
	if err := tn.addrFlags(newIf, netip.PrefixFrom(task.IPv4, IPv4Net.Bits()), unix.IFA_F_NOPREFIXROUTE); err != nil {
		return err
	}
	// Replaces the connected route of the old link (same prefix and
	// priority): the switch is one route change.
	if err := tn.route(IPv4Net, netip.Addr{}, newIf); err != nil {
		return err
	}
	if err := l.sendARP(task, newIf, 1, nil, task.IPv4, task.IPv4); err != nil {
		return err
	}
	mac := mustMAC(task.MAC)
	for deadline := time.Now().Add(2 * time.Second); ; {
		ok, err := bn.hasFDB(task.Ifname, mac)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("move %s: %s's bridge has no entry for %s on %s 2s after the gratuitous ARP", task.Name, to.Name, mac, task.Ifname)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if held != nil {
		if err := held(); err != nil {
			return err
		}
	}
	return l.commitAt(ctx, task, to, r)
}

// commitAt commits a prepared (standby) task at its new NVE by attaching
// it there (the registration moves the mapping) and records mapsrv's own
// commit time of the move.
func (l *Lab) commitAt(ctx context.Context, task *Task, to *NVE, r *MoveResult) error {
	if err := l.attachTask(ctx, task, to.Name); err != nil {
		return err
	}
	r.Committed = time.Now()
	r.Attached = time.Now()
	if m, err := l.Mapped(ctx, task.Name); err == nil && !m.Updated.IsZero() && m.NVE == to.Name {
		r.Committed = m.Updated
	}
	return nil
}

// bothUp waits until both ends of a new veth report carrier: until then
// the device drops what it is given.
func bothUp(ctx context.Context, a *node, aIf string, b *node, bIf string) error {
	if err := a.waitOperUp(ctx, aIf, time.Second); err != nil {
		return err
	}
	return b.waitOperUp(ctx, bIf, time.Second)
}

func (task *Task) taskIf() string {
	if task.TaskIfname == "" {
		return "eth0"
	}
	return task.TaskIfname
}
