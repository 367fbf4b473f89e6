//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// Components the lab runs, by binary name.
const (
	BinMapsrv    = "mapsrv"
	BinIlad      = "ilad"
	BinDNSBridge = "dnsbridge"
	BinIlactl    = "ilactl"
)

// findBin returns the path of a component binary: in dir if set, else
// beside the running executable, else on $PATH.
func findBin(dir, name string) (string, error) {
	var tried []string
	if dir != "" {
		p := filepath.Join(dir, name)
		if isExec(p) {
			return p, nil
		}
		tried = append(tried, p)
	} else {
		if self, err := os.Executable(); err == nil {
			p := filepath.Join(filepath.Dir(self), name)
			if isExec(p) {
				return p, nil
			}
			tried = append(tried, p)
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		tried = append(tried, "$PATH")
	}
	return "", fmt.Errorf("component %s: binary not found (looked in %s); build it with `go build -o DIR ./cmd/%s` and pass --bin-dir DIR", name, strings.Join(tried, ", "), name)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// proc is a daemon the lab started.
type proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Exe  string `json:"exe"`
	Log  string `json:"log"`
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs bin with args inside ns (the child is forked from a thread
// switched into the namespace, so it stays in the host mount namespace and
// sees /sys/fs/bpf), in its own session, logging to <state>/logs/<name>.log,
// and records its pid in <state>/pids/<name>.pid.
func (l *Lab) start(name string, ns *netns.NS, bin string, args ...string) (*proc, error) {
	return l.startEnv(name, ns, nil, bin, args...)
}

// startEnv is start with env added to the child's environment.
func (l *Lab) startEnv(name string, ns *netns.NS, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(l.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = l.dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := cmd.Start
	if ns != nil {
		err = ns.Do(start)
	} else {
		err = start()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{Name: name, PID: cmd.Process.Pid, Exe: bin, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }() // reaps the child; ends when it exits
	pidPath := filepath.Join(l.dir, "pids", name+".pid")
	if err := os.MkdirAll(filepath.Dir(pidPath), 0o755); err != nil {
		return p, fmt.Errorf("pid dir: %w", err)
	}
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(p.PID)+" "+bin+"\n"), 0o644); err != nil {
		return p, fmt.Errorf("pid file of %s: %w", name, err)
	}
	l.procs[name] = p
	return p, nil
}

// exited reports whether p has exited (only for processes this Lab started).
func (p *proc) exited() bool {
	if p.done == nil {
		return !alive(p.PID, p.Exe)
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// alive reports whether pid runs exe (guards against a recycled pid).
func alive(pid int, exe string) bool {
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	got = strings.TrimSuffix(got, " (deleted)")
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie has no exe; a stopped-but-unreaped child shows Z.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			return false
		}
	}
	return got == exe || filepath.Base(got) == filepath.Base(exe)
}

// stopPID sends SIGTERM, waits up to grace, then SIGKILL.
func stopPID(pid int, exe string, grace time.Duration) error {
	if !alive(pid, exe) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", filepath.Base(exe), pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid, exe) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if !alive(pid, exe) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d): still running after SIGKILL", filepath.Base(exe), pid)
}

// stop stops one of our processes and removes its pid file.
func (l *Lab) stop(name string, grace time.Duration) error {
	p, ok := l.procs[name]
	if !ok {
		return nil
	}
	err := stopPID(p.PID, p.Exe, grace)
	if p.done != nil && err == nil {
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
		}
	}
	delete(l.procs, name)
	_ = os.Remove(filepath.Join(l.dir, "pids", name+".pid"))
	return err
}

// readPIDs lists the pid files of a state dir.
func readPIDs(dir string) map[string]*proc {
	out := map[string]*proc{}
	ents, _ := os.ReadDir(filepath.Join(dir, "pids"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "pids", e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 1 {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".pid")
		out[name] = &proc{Name: name, PID: pid, Exe: f[1]}
	}
	return out
}
