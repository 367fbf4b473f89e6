//go:build linux

package lab

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab/vm"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
)

// vmImageDir is where the guest image is built: $ILAMESH_VM_CACHE (tests
// share one), else under the state dir.
func (l *Lab) vmImageDir() string {
	return cmp.Or(os.Getenv("ILAMESH_VM_CACHE"), filepath.Join(l.dir, "vm", "image"))
}

// startVMs boots the VM tasks: builds the guest image, starts QEMU in each
// task's NVE namespace, attaches the task through ilad (as for any task)
// and waits until a container task reaches the guest.
func (l *Lab) startVMs(ctx context.Context) error {
	var vms []*Task
	var probe *Task
	for i := range l.topo.Tasks {
		switch t := &l.topo.Tasks[i]; {
		case t.VM != nil:
			vms = append(vms, t)
		case probe == nil && !t.IPv4.IsValid():
			probe = t
		}
	}
	if len(vms) == 0 {
		return nil
	}
	l.progress("building the guest image in %s", l.vmImageDir())
	img, err := vm.BuildImage(ctx, l.vmImageDir(), func(s string) { l.progress("%s", s) })
	if err != nil {
		return err
	}
	for _, t := range vms {
		t.VM.Image = img
		nve, err := l.topo.NVEByName(t.NVE)
		if err != nil {
			return err
		}
		l.progress("booting VM %s (QEMU, TCG) on %s", t.Name, t.NVE)
		q, err := l.startQEMU(ctx, t, nve, false)
		if err != nil {
			return err
		}
		if err := l.attachTask(ctx, t, t.NVE); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = q.WaitReady(rctx)
		cancel()
		q.Close() // let `ilalab demo` take the QMP socket over
		if err != nil {
			return err
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	if probe != nil {
		for _, t := range vms {
			l.progress("waiting until %s reaches VM %s", probe.Name, t.Name)
			if err := l.WaitReachable(ctx, probe.Name, t.SIR, 20*time.Second); err != nil {
				return err
			}
		}
	}
	return nil
}

// qemuConfig is the QEMU configuration of VM task t on nve, in its
// generation gen.
func (l *Lab) qemuConfig(t *Task, nve *NVE, gen int, incoming bool) (vm.Config, error) {
	n, err := l.node(nve.Netns)
	if err != nil {
		return vm.Config{}, err
	}
	mac, err := ila.ParseMAC(t.MAC)
	if err != nil {
		return vm.Config{}, err
	}
	return vm.Config{
		Name: fmt.Sprintf("%s-%d", t.Name, gen), Image: t.VM.Image, NS: n.ns, Tap: t.Ifname, MAC: mac,
		Net: vm.Net{Addr: netip.PrefixFrom(t.SIR, SIRPrefix.Bits())},
		Dir: filepath.Join(l.dir, "vm", fmt.Sprintf("%s-%d", t.Name, gen)), Incoming: incoming,
	}, nil
}

// startQEMU starts the next QEMU of t on nve (booting, or incoming) and
// records its pid file, so that Down stops it.
func (l *Lab) startQEMU(ctx context.Context, t *Task, nve *NVE, incoming bool) (*vm.QEMU, error) {
	gen := t.VM.Gen + 1
	cfg, err := l.qemuConfig(t, nve, gen, incoming)
	if err != nil {
		return nil, err
	}
	q, err := vm.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := l.writeQEMUPid(cfg.Name, q.PID()); err != nil {
		q.Kill()
		return nil, err
	}
	if !incoming {
		t.VM.Dir, t.VM.Gen, t.VM.PID = cfg.Dir, gen, q.PID()
	}
	return q, nil
}

func (l *Lab) writeQEMUPid(name string, pid int) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("qemu %s: %w", name, err)
	}
	dir := filepath.Join(l.dir, "pids")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "qemu-"+name+".pid"), []byte(strconv.Itoa(pid)+" "+exe+"\n"), 0o644)
}

// openQEMU connects to the running QEMU of VM task t.
func (l *Lab) openQEMU(ctx context.Context, t *Task) (*vm.QEMU, error) {
	nve, err := l.topo.NVEByName(t.NVE)
	if err != nil {
		return nil, err
	}
	cfg, err := l.qemuConfig(t, nve, t.VM.Gen, false)
	if err != nil {
		return nil, err
	}
	return vm.Open(ctx, cfg, t.VM.PID)
}

// migrateVM live-migrates VM task t to NVE to, as libvirt would: the
// destination QEMU starts incoming on its own tap in to's namespace, the
// libvirt hook prepares the task there, QMP migrate, the guest resumes,
// its announce commits the task at to's ilad, the source QEMU quits and
// the hook's release detaches the task at the source.
func (l *Lab) migrateVM(ctx context.Context, t *Task, from, to *NVE, r *MoveResult) (*VMReport, error) {
	rep := &VMReport{}
	src, err := l.openQEMU(ctx, t)
	if err != nil {
		return rep, err
	}
	defer src.Close()
	dst, err := l.startQEMU(ctx, t, to, true)
	if err != nil {
		return rep, err
	}
	defer dst.Close()
	dcfg := dst.Config()
	// The orchestrator (the lab, as whatever runs virsh migrate would)
	// tells mapsrv to expect the task at the destination before anything
	// is prepared there: that is what justifies the commit's claim.
	drop, err := l.expectMove(ctx, t, to, 2*time.Minute)
	if err != nil {
		dst.Kill()
		_ = os.Remove(filepath.Join(l.dir, "pids", "qemu-"+dcfg.Name+".pid"))
		return rep, err
	}
	p0 := time.Now()
	rep.PrepareLog, err = l.libvirtHook(ctx, to, t, "started", "begin")
	rep.Prepare = Duration(time.Since(p0))
	if err != nil {
		drop()
		dst.Kill()
		_ = os.Remove(filepath.Join(l.dir, "pids", "qemu-"+dcfg.Name+".pid"))
		return rep, fmt.Errorf("prepare %s on %s (libvirt hook): %w", t.Name, to.Name, err)
	}
	r.LinkMoved = time.Now() // the destination's tap is ready
	// The source's ilad learns where the guest goes: from its stop on
	// (its own QMP monitor) it redirects the guest's packets there, where
	// the prepared tap holds them until the guest runs.
	fromc, err := locator.NewClient(l.iladSock(from.Name))
	if err != nil {
		return rep, err
	}
	scfg := src.Config()
	if _, err := fromc.Handover(ctx, t.Name, locator.HandoverSpec{Locator: to.Locator, QMP: scfg.AgentQMPSocket()}); err != nil {
		l.progress("handover of %s at %s (the commit will redirect): %v", t.Name, from.Name, err)
	}
	m, err := src.Migrate(ctx, dst)
	if err != nil {
		drop()
		dst.Kill()
		_ = os.Remove(filepath.Join(l.dir, "pids", "qemu-"+dcfg.Name+".pid"))
		// libvirt releases the failed incoming domain: the hook aborts.
		_, _ = l.libvirtHook(context.WithoutCancel(ctx), to, t, "release", "end")
		return rep, err
	}
	rep.TotalTime, rep.Downtime, rep.SetupTime = Duration(m.TotalTime), Duration(m.Downtime), Duration(m.SetupTime)
	rep.GuestStopped, rep.GuestResumed, rep.Paused = m.Stopped, m.Resumed, Duration(m.Resumed.Sub(m.Stopped))
	// The guest runs at the destination (whatever happens next): its
	// announce commits the task there.
	oldGen := t.VM.Gen
	t.NVE = to.Name
	t.VM.Dir, t.VM.Gen, t.VM.PID = dcfg.Dir, oldGen+1, dst.PID()
	cerr := l.waitCommitted(ctx, t, to, m.Resumed, r, rep)
	if st, err := fromc.Task(ctx, t.Name); err == nil {
		rep.EarlyRedirect = st.RedirectedAt
	}
	// The source: QEMU exits, libvirt releases the domain.
	qerr := src.Quit(ctx)
	_ = os.Remove(filepath.Join(l.dir, "pids", fmt.Sprintf("qemu-%s-%d.pid", t.Name, oldGen)))
	var rerr error
	if rep.ReleaseLog, rerr = l.libvirtHook(ctx, from, t, "release", "end"); rerr != nil {
		rerr = fmt.Errorf("release %s on %s (libvirt hook): %w", t.Name, from.Name, rerr)
	}
	return rep, errors.Join(cerr, qerr, rerr)
}

// waitCommitted waits until to's ilad has committed t and records when
// (and what committed it) in r and rep.
func (l *Lab) waitCommitted(ctx context.Context, t *Task, to *NVE, resumed time.Time, r *MoveResult, rep *VMReport) error {
	c, err := locator.NewClient(l.iladSock(to.Name))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	var st locator.TaskStatus
	for {
		st, err = c.Task(ctx, t.Name)
		if err == nil && st.State == locator.StateActive && st.Registered {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not committed at %s 5s after the guest resumed: state %q, error %q, %v", t.Name, to.Name, st.State, st.Error, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Attached = st.CommittedAt
	rep.FirstFrame, rep.Committed, rep.CommittedBy = st.FirstFrame, st.CommittedAt, st.CommittedBy
	if !st.FirstFrame.IsZero() {
		rep.CommitAfterFrame = Duration(st.CommittedAt.Sub(st.FirstFrame))
		rep.FrameAfterResume = Duration(st.FirstFrame.Sub(resumed))
	}
	r.Committed = st.CommittedAt
	if mt, err := l.Mapped(ctx, t.Name); err == nil && mt.NVE == to.Name && !mt.Updated.IsZero() {
		r.Committed = mt.Updated
	}
	return nil
}

// domainXML is the libvirt domain XML of VM task t, as libvirt would hand
// it to its hook.
func (t *Task) domainXML() string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  <metadata>
    <ila:task xmlns:ila="https://ilamesh.dev/xmlns/libvirt/1" tenant="%s" name="%s" sir="%s"/>
  </metadata>
  <devices>
    <interface type='ethernet'>
      <mac address='%s'/>
      <target dev='%s'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`, t.Name, t.Tenant, t.Name, t.SIR, t.MAC, t.Ifname)
}

// libvirtHook runs `ilactl hook libvirt` against nve's ilad as libvirt
// runs its qemu hook: domain, operation, sub-operation and "-", the domain
// XML on stdin. It returns the hook's log (stderr).
func (l *Lab) libvirtHook(ctx context.Context, nve *NVE, t *Task, op, sub string) (string, error) {
	bin := l.bins[BinIlactl]
	if bin == "" {
		return "", fmt.Errorf("libvirt hook: %w: %s", ErrMissing, BinIlactl)
	}
	cmd := exec.CommandContext(ctx, bin, "hook", "libvirt", "--ilad", l.iladSock(nve.Name), t.Name, op, sub, "-")
	cmd.Stdin = strings.NewReader(t.domainXML())
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, io.Discard
	err := cmd.Run()
	return strings.TrimSpace(stderr.String()), err
}

// StreamEcho runs a TCP stream from task src to the TCP echo responder of
// the guest at dst (port vm.EchoPort): a chunk every interval, each
// recorded when its echo comes back.
func (l *Lab) StreamEcho(ctx context.Context, src string, dst netip.Addr, interval time.Duration) (*FlowStats, error) {
	st, err := l.topo.TaskByName(src)
	if err != nil {
		return nil, err
	}
	sn, err := l.node(st.Netns)
	if err != nil {
		return nil, err
	}
	addr := netip.AddrPortFrom(dst, vm.EchoPort)
	var conn net.Conn
	if err := sn.ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IP(st.SIR.AsSlice())}}
		var err error
		conn, err = d.Dial("tcp6", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("tcp connect %s -> %s: %w", src, addr, err)
	}
	defer conn.Close()
	fs := &FlowStats{Name: fmt.Sprintf("tcp %s -> %s (echo)", src, dst), Kind: "tcp-echo", From: src, To: dst.String(), Interval: Duration(interval)}
	stream(ctx, fs, conn, conn, echoChunk, interval)
	return fs, nil
}

// echoChunk is the VM stream's unit (seq, send time, padding): small, as
// the guest's echo (busybox nc and cat under TCG) is slow.
const echoChunk = 256
