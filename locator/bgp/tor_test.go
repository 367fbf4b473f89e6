package bgp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/locator/bgp"
)

// The ToR runs in a child process (this test binary again): GoBGP writes
// package globals when a server starts (table.SelectionOptions), so two
// servers in one process race.
const torEnv = "ILAMESH_BGP_TEST_TOR"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(torEnv); cfg != "" {
		os.Exit(runToR(cfg))
	}
	os.Exit(m.Run())
}

// torView is what the child reports, one JSON line per change.
type torView struct {
	Routes map[netip.Prefix]netip.Addr `json:"routes"`
	State  string                      `json:"state"`
}

// runToR is the child: it runs the speaker configured in cfg (JSON),
// prints the routes from the host and the session state on every change
// and exits when its stdin closes.
func runToR(cfgJSON string) int {
	var cfg bgp.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "tor config:", err)
		return 2
	}
	sp, err := bgp.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tor:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	var last []byte
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, "tor:", err)
				return 1
			}
			return 0
		case <-time.After(20 * time.Millisecond):
		}
		v := torView{State: "idle"}
		if r, err := sp.Received(ctx, cfg.Peers[0].Address); err == nil {
			v.Routes = r
		}
		if st := sp.State(ctx); len(st.Peers) > 0 {
			v.State = st.Peers[0].State
		}
		b, _ := json.Marshal(v)
		if string(b) != string(last) {
			last = b
			_ = enc.Encode(v)
		}
	}
}

// torProc is the parent's handle on the child.
type torProc struct {
	mu   sync.Mutex
	view torView
}

func (p *torProc) now() (map[netip.Prefix]netip.Addr, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view.Routes, p.view.State
}

func startToR(t *testing.T, cfg bgp.Config) *torProc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), torEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &torProc{view: torView{State: "idle"}}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var v torView
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				p.mu.Lock()
				p.view = v
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		in.Close()
		<-read
		_ = cmd.Wait()
	})
	return p
}
