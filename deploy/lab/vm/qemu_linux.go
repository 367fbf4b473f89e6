//go:build linux

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/qmp"
)

// Config describes one QEMU process of a guest.
type Config struct {
	// Name names the process in logs.
	Name  string
	Image Image
	// NS is the network namespace QEMU runs in and creates its tap in
	// (nil: the current one).
	NS *netns.NS
	// Tap is the tap device's name in NS; QEMU creates it (down, without
	// addresses: the NVE prepares it as any task port).
	Tap string
	// MAC is the guest NIC's address; it travels with the guest.
	MAC ila.MAC
	Net Net
	// MemoryMB is the guest's RAM; zero means 128.
	MemoryMB int
	// Dir holds the QMP socket, the serial console log, QEMU's own log
	// and the incoming migration socket.
	Dir string
	// Incoming starts QEMU waiting for a migration on a unix socket in Dir
	// instead of booting.
	Incoming bool
	// Binary is the QEMU binary; empty means qemu-system-x86_64 on PATH.
	Binary string
}

func (c *Config) validate() error {
	switch {
	case c.Name == "" || strings.ContainsAny(c.Name, "/ \t\n"):
		return fmt.Errorf("vm name %q: want a word", c.Name)
	case c.Image.Kernel == "" || c.Image.Initrd == "":
		return errors.New("vm: no image")
	case c.Tap == "" || len(c.Tap) > 15:
		return fmt.Errorf("vm %s: tap name %q: want 1 to 15 bytes", c.Name, c.Tap)
	case c.MAC.IsZero() || c.MAC[0]&1 != 0:
		return fmt.Errorf("vm %s: MAC %s: want a unicast address", c.Name, c.MAC)
	case c.Dir == "":
		return fmt.Errorf("vm %s: no runtime directory", c.Name)
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 128
	}
	if c.Binary == "" {
		c.Binary = "qemu-system-x86_64"
	}
	return c.Net.validate()
}

// QMPSocket is the QMP socket of the QEMU of cfg.
func (c *Config) QMPSocket() string { return filepath.Join(c.Dir, "qmp.sock") }

// AgentQMPSocket is a second QMP monitor of the QEMU of cfg, for the
// NVE's ilad (QEMU serves one client per monitor): it watches the guest
// stop at the source of a migration (locator.Agent.Handover).
func (c *Config) AgentQMPSocket() string { return filepath.Join(c.Dir, "ilad-qmp.sock") }

// MigrationSocket is where an incoming QEMU listens for the migration
// stream.
func (c *Config) MigrationSocket() string { return filepath.Join(c.Dir, "migrate.sock") }

// ConsoleLog is the guest's serial console.
func (c *Config) ConsoleLog() string { return filepath.Join(c.Dir, "console.log") }

// QEMU is one running QEMU process with its QMP session.
type QEMU struct {
	cfg  Config
	proc *os.Process
	mon  *qmp.Monitor
	exit chan struct{}

	mu     sync.Mutex
	events []qmp.Event
	notify chan struct{} // closed and replaced on every event
}

// Start runs QEMU for cfg and connects to its QMP socket. The guest boots
// (WaitReady tells when its network is up) unless cfg.Incoming, in which
// case QEMU waits for Migrate from another QEMU. QEMU runs in its own
// session, so it outlives its caller's process unless stopped.
func Start(ctx context.Context, cfg Config) (*QEMU, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w (apt-get install qemu-system-x86)", cfg.Name, err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	for _, p := range []string{cfg.QMPSocket(), cfg.AgentQMPSocket(), cfg.MigrationSocket(), cfg.ConsoleLog()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(cfg.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	defer logf.Close()
	args := cfg.args()
	fmt.Fprintf(logf, "# %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cfg.NS != nil {
		err = cfg.NS.Do(cmd.Start)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("vm %s: start %s: %w", cfg.Name, bin, err)
	}
	q := &QEMU{cfg: cfg, proc: cmd.Process, exit: make(chan struct{}), notify: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(q.exit) }()
	if err := q.connect(ctx); err != nil {
		q.Kill()
		return nil, err
	}
	return q, nil
}

// Open connects to the QEMU of cfg started earlier (by Start in another
// process) as process pid. QEMU serves one client on its QMP socket: the
// starting process must have let go of it (exited, or Close).
func Open(ctx context.Context, cfg Config, pid int) (*QEMU, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	proc, err := os.FindProcess(pid)
	if err != nil || proc.Signal(syscall.Signal(0)) != nil {
		return nil, fmt.Errorf("vm %s: no QEMU process %d", cfg.Name, pid)
	}
	q := &QEMU{cfg: cfg, proc: proc, exit: make(chan struct{}), notify: make(chan struct{})}
	go func() {
		// Not our child: poll for its end.
		for proc.Signal(syscall.Signal(0)) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		close(q.exit)
	}()
	if err := q.connect(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// connect dials the QMP socket while QEMU runs.
func (q *QEMU) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-q.exit:
			cancel() // QEMU died: stop dialling
		case <-dctx.Done():
		}
	}()
	var err error
	q.mon, err = qmp.Dial(dctx, q.cfg.QMPSocket(), q.record)
	if err != nil {
		return fmt.Errorf("vm %s: %w%s", q.cfg.Name, err, q.logTail())
	}
	return nil
}

func (c *Config) args() []string {
	a := []string{
		"-name", c.Name,
		"-accel", "tcg", "-m", fmt.Sprint(c.MemoryMB), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", c.Image.Kernel, "-initrd", c.Image.Initrd, "-append", c.Net.cmdline(),
		"-serial", "file:" + c.ConsoleLog(),
		"-qmp", "unix:" + c.QMPSocket() + ",server=on,wait=off",
		"-qmp", "unix:" + c.AgentQMPSocket() + ",server=on,wait=off",
		"-netdev", "tap,id=n0,ifname=" + c.Tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,romfile=,mac=" + c.MAC.String(),
	}
	if c.Incoming {
		a = append(a, "-incoming", "unix:"+c.MigrationSocket())
	}
	return a
}

// record keeps every QMP event with QEMU's timestamp.
func (q *QEMU) record(e qmp.Event) {
	q.mu.Lock()
	q.events = append(q.events, e)
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
}

// Config returns the process's configuration.
func (q *QEMU) Config() Config { return q.cfg }

// PID is QEMU's process id.
func (q *QEMU) PID() int { return q.proc.Pid }

// Close ends the QMP session; QEMU keeps running (Open connects again).
func (q *QEMU) Close() { q.mon.Close() }

// Monitor is the QMP session (owned by q; do not close it).
func (q *QEMU) Monitor() *qmp.Monitor { return q.mon }

// Exited is closed when QEMU has exited.
func (q *QEMU) Exited() <-chan struct{} { return q.exit }

// Events returns the QMP events seen so far.
func (q *QEMU) Events() []qmp.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]qmp.Event(nil), q.events...)
}

// WaitEvent waits for the first event called name (at or after index from
// of Events) and returns it.
func (q *QEMU) WaitEvent(ctx context.Context, name string, from int) (qmp.Event, error) {
	for {
		q.mu.Lock()
		for _, e := range q.events[min(from, len(q.events)):] {
			if e.Name == name {
				q.mu.Unlock()
				return e, nil
			}
		}
		ch := q.notify
		q.mu.Unlock()
		select {
		case <-ch:
		case <-q.exit:
			return qmp.Event{}, fmt.Errorf("vm %s: waiting for %s: qemu exited%s", q.cfg.Name, name, q.logTail())
		case <-ctx.Done():
			return qmp.Event{}, fmt.Errorf("vm %s: waiting for %s: %w", q.cfg.Name, name, ctx.Err())
		}
	}
}

// WaitReady waits for the booting guest's init to report its network up.
func (q *QEMU) WaitReady(ctx context.Context) error {
	for {
		b, _ := os.ReadFile(q.cfg.ConsoleLog())
		if bytes.Contains(b, []byte(ReadyLine)) {
			return nil
		}
		select {
		case <-q.exit:
			return fmt.Errorf("vm %s: qemu exited before the guest was ready%s", q.cfg.Name, q.logTail())
		case <-ctx.Done():
			return fmt.Errorf("vm %s: guest not ready: %w (console: %q)", q.cfg.Name, ctx.Err(), lastLine(b))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Migration is the outcome of one live migration.
type Migration struct {
	// Started is when migrate was issued, Completed when the source
	// reported completion (host clock).
	Started   time.Time `json:"started"`
	Completed time.Time `json:"completed"`
	// QEMU's own figures from query-migrate.
	TotalTime time.Duration `json:"total_time"`
	Downtime  time.Duration `json:"downtime"`
	SetupTime time.Duration `json:"setup_time"`
	// Stopped is the source's STOP event (the guest paused for the last
	// copy), Resumed the destination's RESUME event (QEMU timestamps).
	Stopped time.Time `json:"guest_stopped"`
	Resumed time.Time `json:"guest_resumed"`
}

type migrateInfo struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	SetupTime int64  `json:"setup-time"`
	ErrorDesc string `json:"error-desc"`
}

// Migrate live-migrates q's guest to the incoming QEMU to and waits until
// the guest runs there. q is left paused ("postmigrate"); Quit it.
func (q *QEMU) Migrate(ctx context.Context, to *QEMU) (*Migration, error) {
	if !to.cfg.Incoming {
		return nil, fmt.Errorf("vm %s: migrate to %s: not started incoming", q.cfg.Name, to.cfg.Name)
	}
	srcFrom, dstFrom := len(q.Events()), len(to.Events())
	// A guest of the lab is small: let the copy run at memory speed and
	// stop it only for a short final round (QEMU's defaults are 32 MiB/s
	// and 300 ms).
	if err := q.mon.Run(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(8) << 30, "downtime-limit": 10}, nil); err != nil {
		return nil, fmt.Errorf("vm %s: %w", q.cfg.Name, err)
	}
	m := &Migration{Started: time.Now()}
	if err := q.mon.Run(ctx, "migrate", map[string]any{"uri": "unix:" + to.cfg.MigrationSocket()}, nil); err != nil {
		return nil, fmt.Errorf("vm %s: %w", q.cfg.Name, err)
	}
	for {
		var mi migrateInfo
		if err := q.mon.Run(ctx, "query-migrate", nil, &mi); err != nil {
			return nil, fmt.Errorf("vm %s: %w", q.cfg.Name, err)
		}
		switch mi.Status {
		case "completed":
			m.Completed = time.Now()
			m.TotalTime = time.Duration(mi.TotalTime) * time.Millisecond
			m.Downtime = time.Duration(mi.Downtime) * time.Millisecond
			m.SetupTime = time.Duration(mi.SetupTime) * time.Millisecond
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			stop, err := q.WaitEvent(wctx, "STOP", srcFrom)
			if err != nil {
				return m, err
			}
			resume, err := to.WaitEvent(wctx, "RESUME", dstFrom)
			if err != nil {
				return m, err
			}
			m.Stopped, m.Resumed = stop.Time, resume.Time
			return m, nil
		case "failed", "cancelled":
			return m, fmt.Errorf("vm %s: migration to %s %s: %s", q.cfg.Name, to.cfg.Name, mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			_ = q.mon.Run(context.Background(), "migrate_cancel", nil, nil)
			return m, fmt.Errorf("vm %s: migration: %w", q.cfg.Name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Quit asks QEMU to exit and waits for it (killing it after a grace
// period).
func (q *QEMU) Quit(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := q.mon.Run(qctx, "quit", nil, nil)
	select {
	case <-q.exit:
		q.mon.Close()
		return nil
	case <-time.After(3 * time.Second):
	}
	q.Kill()
	if err != nil {
		return fmt.Errorf("vm %s: %w", q.cfg.Name, err)
	}
	return fmt.Errorf("vm %s: qemu did not quit; killed", q.cfg.Name)
}

// Kill ends QEMU at once and waits for it.
func (q *QEMU) Kill() {
	if q.mon != nil {
		q.mon.Close()
	}
	_ = q.proc.Kill()
	<-q.exit
}

func (q *QEMU) logTail() string {
	b, _ := os.ReadFile(filepath.Join(q.cfg.Dir, "qemu.log"))
	if l := lastLine(b); l != "" && !strings.HasPrefix(l, "# ") {
		return " (qemu: " + l + ")"
	}
	return ""
}
