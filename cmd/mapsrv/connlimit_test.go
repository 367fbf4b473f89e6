package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// init runs mapsrv itself, instead of the tests, when the test binary is
// started by TestRunIdleConnections with a lower open file limit.
func init() {
	if n := os.Getenv("MAPSRV_TEST_NOFILE"); n != "" {
		os.Exit(childMain(n, os.Getenv("MAPSRV_TEST_ARGS")))
	}
}

func childMain(nofile, args string) int {
	n, err := strconv.ParseUint(nofile, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "MAPSRV_TEST_NOFILE:", err)
		return 2
	}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		fmt.Fprintln(os.Stderr, "getrlimit:", err)
		return 2
	}
	r.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		return 2
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { // the parent ends the child by closing its stdin
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	if err := run(ctx, strings.Split(args, "\x1f"), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mapsrv:", err)
		return 1
	}
	return 0
}

// TestRunIdleConnections holds thousands of idle keep-alive connections
// to the management API of a mapsrv whose open file limit is 256 (what
// an attacker without a token can do) and checks that mapsrv stays up,
// that its embedded etcd still takes writes and that a client on another
// address is still answered at once.
func TestRunIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: thousands of connections")
	}
	dir, err := os.MkdirTemp("", "mapsrv-fd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	api := freePort(t, "tcp")
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--api-addr", api, "--api-idle-timeout", "1h", "--log-level", "warn"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MAPSRV_TEST_NOFILE=256", "MAPSRV_TEST_ARGS="+strings.Join(args, "\x1f"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	// A new connection for every call: a kept-alive one would hide that
	// mapsrv cannot accept.
	c, err := apiclient.New(apiclient.Config{URL: "http://" + api, HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}})
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy := func(within time.Duration) error {
		deadline := time.Now().Add(within)
		for {
			hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.Health(hctx)
			cancel()
			if err == nil {
				return nil
			}
			select {
			case err := <-exited:
				t.Fatalf("mapsrv exited: %v\n%s", err, logs)
			default:
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := waitHealthy(60 * time.Second); err != nil {
		t.Fatalf("mapsrv not healthy: %v\n%s", err, logs)
	}

	// The attacker: 2000 keep-alive connections from 127.0.0.2, each
	// after one request (an unauthenticated health check), kept idle; the
	// ones the server closes are opened again.
	const attackers = 2000
	actx, stopAttack := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	held := 0
	for i := 0; i < attackers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
			for actx.Err() == nil {
				conn, err := d.DialContext(actx, "tcp", api)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				stop := context.AfterFunc(actx, func() { conn.Close() })
				fmt.Fprintf(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err == nil {
					resp.Body.Close()
					mu.Lock()
					held++
					mu.Unlock()
					io.Copy(io.Discard, conn) // idle until the server closes it
					mu.Lock()
					held--
					mu.Unlock()
				}
				conn.Close()
				stop()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() { stopAttack(); wg.Wait() })
	time.Sleep(5 * time.Second)

	// mapsrv answers a client on another address and etcd takes writes.
	if err := waitHealthy(10 * time.Second); err != nil {
		t.Fatalf("mapsrv does not answer under %d idle connections: %v\n%s", attackers, err, logs)
	}
	for i := range 20 {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.AddDomain(wctx, ila.Domain{Name: fmt.Sprintf("d%d", i), SIR: ila.SIRPrefix(0x20010db800000000 + uint64(i)<<16)})
		cancel()
		if err != nil {
			t.Fatalf("write %d under %d idle connections: %v\n%s", i, attackers, err, logs)
		}
	}
	mu.Lock()
	t.Logf("attacker connections held by mapsrv: %d", held)
	mu.Unlock()
	select {
	case err := <-exited:
		t.Fatalf("mapsrv exited: %v\n%s", err, logs)
	default:
	}
	stopAttack()
	wg.Wait()
}

// TestStreamDeadlines checks that the server's read and write deadlines
// end an ordinary slow response but not the watch stream.
func TestStreamDeadlines(t *testing.T) {
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 8 {
			if _, err := fmt.Fprintf(w, "%d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	srv := httptest.NewUnstartedServer(streamDeadlines(stream))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	defer srv.Close()
	for _, tc := range []struct {
		path  string
		lines int
	}{{"/v1/watch", 8}, {"/v1/tasks", 3}} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := strings.Count(string(b), "\n"); (tc.lines == 8) != (n == 8) {
			t.Errorf("GET %s: %d lines before the end, want %s", tc.path, n, map[bool]string{true: "all 8", false: "fewer than 8"}[tc.lines == 8])
		}
	}
}
