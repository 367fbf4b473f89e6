package lab

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/miekg/dns"
)

// TestDNSBridgeArgsRateLimit starts dnsbridge as the lab does (the real
// binary, over a real etcd, on loopback) and floods it from one client:
// the lab's rate limit drops what exceeds the burst and the rate.
func TestDNSBridgeArgsRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dnsbridge")
	}
	bin := filepath.Join(t.TempDir(), "dnsbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dnsbridge")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, endpoints := etcdtest.Start(t)
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, dnsbridgeArgs(endpoints, addr)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })

	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(Zone), dns.TypeANY)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Wait until it answers, then let the bucket refill.
	buf := make([]byte, 65535)
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn.Write(wire)
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := conn.Read(buf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsbridge does not answer\n%s", logs.String())
		}
	}
	time.Sleep(time.Duration(DNSRateBurst) * time.Second / DNSRateLimit)

	const queries = 3 * DNSRateBurst
	t0 := time.Now()
	done := make(chan int)
	var last time.Time // of the last answer: the server may work through its socket buffer after the sender is done
	go func() {
		n := 0
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := conn.Read(buf); err != nil {
				done <- n
				return
			}
			n++
			last = time.Now()
		}
	}()
	for range queries {
		if _, err := conn.Write(wire); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Since(t0)
	answered := <-done
	window := max(sent, last.Sub(t0))
	allowed := DNSRateBurst + int(window.Seconds()*DNSRateLimit) + 10
	t.Logf("%d queries in %v, %d answered within %v (allowed about %d)", queries, sent, answered, window, allowed)
	if answered == 0 || answered > allowed {
		t.Errorf("%d of %d queries sent in %v answered, want between 1 and %d (burst %d + %d/s)", answered, queries, sent, allowed, DNSRateBurst, DNSRateLimit)
	}
}
