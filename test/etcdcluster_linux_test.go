//go:build linux

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEtcdClusterRehearsal is deploy/README.md's rehearsal: a 3-member etcd
// cluster started by deploy/etcd/local-cluster.sh (into a directory that
// does not exist yet), two mapsrv replicas against it, a task registered
// and moved through one replica's API and seen through the other's watch
// and API; then the etcd leader is killed and moves go on, through either
// replica.
func TestEtcdClusterRehearsal(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: runs an etcd cluster and two mapsrv")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: the binaries are built for root runs; run with sudo")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	for _, b := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (Debian/Ubuntu: apt install etcd-server etcd-client; test/run.sh installs them)", b)
		}
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(filepath.Dir(file)), "deploy", "etcd", "local-cluster.sh")
	dir := filepath.Join(t.TempDir(), "not", "yet")
	t.Cleanup(func() { stopPIDFiles(t, dir) })
	base := freePortRun(t, 6)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("ETCD_PORT_BASE=%d", base))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("local-cluster.sh %s: %v\n%s", dir, err, out)
	}
	m := regexp.MustCompile(`ETCD_ENDPOINTS=(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("local-cluster.sh printed no ETCD_ENDPOINTS:\n%s", out)
	}
	endpoints := string(m[1])
	if got := strings.Count(endpoints, ",") + 1; got != 3 {
		t.Fatalf("endpoints %q: %d members, want 3", endpoints, got)
	}

	apiA := startMapsrv(t, "a", endpoints)
	apiB := startMapsrv(t, "b", endpoints)
	ilactl := func(api string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(binDir, "ilactl"), append([]string{"--api", api, "-o", "json"}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(api string, args ...string) {
		t.Helper()
		if out, err := ilactl(api, args...); err != nil {
			t.Fatalf("ilactl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	must(apiA, "domain", "add", "default", "--sir-prefix", "fd00:5151::/64")
	must(apiA, "nve", "add", "nve1", "--locator", "fd00:0:0:1", "--underlay", "fd00:ff::1")
	must(apiA, "nve", "add", "nve2", "--locator", "fd00:0:0:2", "--underlay", "fd00:ff::2")

	// B's watch: every task event it streams, as "name@nve".
	wctx, wcancel := context.WithCancel(context.Background())
	watch := exec.CommandContext(wctx, filepath.Join(binDir, "ilactl"), "--api", apiB, "-o", "json", "watch")
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var watchErr strings.Builder
	watch.Stderr = &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 100)
	go func() {
		defer close(seen)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev struct {
				Type string `json:"type"`
				Task *struct {
					Name string `json:"name"`
					NVE  string `json:"nve"`
				} `json:"task"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Task != nil {
				seen <- ev.Task.Name + "@" + ev.Task.NVE
			}
		}
	}()
	t.Cleanup(func() {
		wcancel()
		_ = watch.Wait()
	})
	waitSeen := func(want string) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case got, ok := <-seen:
				if !ok {
					t.Fatalf("B's watch ended before it showed %s: %s", want, watchErr.String())
				}
				if got == want {
					return
				}
			case <-timeout:
				t.Fatalf("B's watch did not show %s within 15s", want)
			}
		}
	}
	// taskAt asks api where the task is.
	taskAt := func(api string) string {
		out, err := ilactl(api, "task", "get", "web1")
		if err != nil {
			return fmt.Sprintf("error: %v: %s", err, out)
		}
		var rec struct {
			NVE string `json:"nve"`
		}
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			return fmt.Sprintf("undecodable %q", out)
		}
		return rec.NVE
	}
	// move moves web1 through api, retrying while the cluster elects a
	// new leader.
	move := func(api, to string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err := ilactl(api, "task", "move", "web1", "--to", to)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("move to %s through %s: %v\n%s", to, api, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	must(apiA, "task", "register", "web1", "--nve", "nve1", "--sir", "fd00:5151::2000:0:0:10")
	waitSeen("web1@nve1")
	if got := taskAt(apiB); got != "nve1" {
		t.Errorf("B's API: web1 at %s, want nve1", got)
	}
	move(apiA, "nve2")
	waitSeen("web1@nve2")

	leader := etcdLeader(t, endpoints)
	pid := readPID(t, filepath.Join(dir, leader+".pid"))
	t.Logf("killing the etcd leader %s (pid %d)", leader, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	move(apiA, "nve1")
	waitSeen("web1@nve1")
	move(apiB, "nve2")
	waitSeen("web1@nve2")
	if got := taskAt(apiA); got != "nve2" {
		t.Errorf("A's API after the leader died: web1 at %s, want nve2", got)
	}
	if now := etcdLeader(t, endpoints); now == leader {
		t.Errorf("leader is still %s after it was killed", leader)
	}
}

// freePortRun returns the first of n consecutive loopback TCP ports that
// are free right now.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(30000)
		var lns []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports", n)
	return 0
}

// startMapsrv runs a mapsrv replica against the cluster, its API on a
// loopback port of its choosing, and returns the API's URL.
func startMapsrv(t *testing.T, name, endpoints string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "mapsrv"), "--etcd-endpoints", endpoints, "--api-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	var log strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		re := regexp.MustCompile(`msg="management api listening" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() })
		<-done
		_ = cmd.Wait()
		timer.Stop()
		if t.Failed() {
			t.Logf("mapsrv %s:\n%s", name, log.String())
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-done:
		t.Fatalf("mapsrv %s exited before it listened", name)
	case <-time.After(15 * time.Second):
		t.Fatalf("mapsrv %s: no API listening after 15s", name)
	}
	return ""
}

// etcdLeader returns the name (e1, e2, e3) of the member that leads, as
// the surviving members report it.
func etcdLeader(t *testing.T, endpoints string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := exec.Command("etcdctl", "--endpoints", endpoints, "--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "status", "-w", "json").Output()
		var st []struct {
			Endpoint string `json:"Endpoint"`
			Status   struct {
				Header struct {
					MemberID uint64 `json:"member_id"`
				} `json:"header"`
				Leader uint64 `json:"leader"`
			} `json:"Status"`
		}
		if json.Unmarshal(out, &st) == nil {
			for _, s := range st {
				if s.Status.Leader != 0 && s.Status.Leader == s.Status.Header.MemberID {
					// Member N listens on the N-th endpoint.
					for i, e := range strings.Split(endpoints, ",") {
						if e == s.Endpoint {
							return fmt.Sprintf("e%d", i+1)
						}
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no etcd leader within 15s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file %s: %q", path, b)
	}
	return pid
}

// stopPIDFiles kills the etcd members local-cluster.sh started in dir (by
// their pid files, checking that each pid still runs etcd) and waits until
// they are gone.
func stopPIDFiles(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		pid := readPID(t, f)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue // gone, or the pid now belongs to someone else
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(stat), ") Z ") {
				break // gone, or a zombie waiting for init
			}
		}
	}
}
