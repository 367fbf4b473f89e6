//go:build linux

package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends ICMPv6 echo requests from the task src to dst every interval
// until ctx ends or count requests were sent, then waits linger for late
// replies. Sockets are opened inside src's namespace.
func (l *Lab) Ping(ctx context.Context, src string, dst netip.Addr, interval time.Duration, count int, linger time.Duration) (*FlowStats, error) {
	task, err := l.topo.TaskByName(src)
	if err != nil {
		return nil, err
	}
	return l.PingFrom(ctx, task.Netns, src, dst, interval, count, linger)
}

// PingFrom is Ping from any namespace of the lab (the control namespace:
// a host outside ILA, whose packets to SIR addresses take an ILA router);
// src names it in the stats.
func (l *Lab) PingFrom(ctx context.Context, nsName, src string, dst netip.Addr, interval time.Duration, count int, linger time.Duration) (*FlowStats, error) {
	n, err := l.node(nsName)
	if err != nil {
		return nil, err
	}
	var c *icmp.PacketConn
	network, laddr, proto := "ip6:ipv6-icmp", "::", 58
	var reqType icmp.Type = ipv6.ICMPTypeEchoRequest
	if dst.Is4() {
		network, laddr, proto, reqType = "ip4:icmp", "0.0.0.0", 1, ipv4.ICMPTypeEcho
	}
	if err := n.ns.Do(func() error {
		var err error
		c, err = icmp.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", nsName, err)
	}
	defer c.Close()
	if !dst.Is4() {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		_ = c.IPv6PacketConn().SetICMPFilter(&f)
	}

	id := rand.IntN(0xffff)
	st := &FlowStats{Name: "ping " + src + " -> " + dst.String(), Kind: "icmp-echo", From: src, To: dst.String(), Interval: Duration(interval)}
	var mu sync.Mutex
	sent := map[int]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			nr, peer, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			m, err := icmp.ParseMessage(proto, buf[:nr])
			if err != nil {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || m.Type == reqType || e.ID != id || peer.(*net.IPAddr).IP.String() != dst.String() || len(e.Data) < 8 {
				continue
			}
			seq := int(binary.BigEndian.Uint64(e.Data))
			mu.Lock()
			if t, ok := sent[seq]; ok {
				st.Arrivals = append(st.Arrivals, Arrival{Seq: seq, Sent: t, Recv: now})
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	payload := make([]byte, 56)
	var last time.Time
	to := &net.IPAddr{IP: net.IP(dst.AsSlice())}
loop:
	for seq := 0; count <= 0 || seq < count; seq++ {
		binary.BigEndian.PutUint64(payload, uint64(seq))
		b, _ := (&icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: payload}}).Marshal(nil)
		now := time.Now()
		mu.Lock()
		sent[seq] = now
		mu.Unlock()
		if seq == 0 {
			st.FirstSent = now
		}
		last = now
		st.Sent++
		if _, err := c.WriteTo(b, to); err != nil && !errors.Is(err, net.ErrClosed) {
			// Sending can fail while a route or neighbour is missing: count
			// it as sent and lost, like ping does.
			_ = err
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	time.Sleep(linger)
	mu.Lock()
	st.sentAt = maps.Clone(sent)
	mu.Unlock()
	c.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	st.summarise(last)
	return st, nil
}

// chunk is the TCP stream's unit: seq + send time + padding.
const chunk = 1024

// Stream runs a TCP stream from task src to task dst (port 5001): the client
// writes a chunk every interval until ctx ends, the server reads and records
// arrivals. A reset or timeout is reported in FlowStats.Error.
func (l *Lab) Stream(ctx context.Context, src, dst string, interval time.Duration) (*FlowStats, error) {
	st, dt, err := l.tasks(src, dst)
	if err != nil {
		return nil, err
	}
	sn, err := l.node(st.Netns)
	if err != nil {
		return nil, err
	}
	dn, err := l.node(dt.Netns)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	addr := netip.AddrPortFrom(dt.SIR, 5001)
	if err := dn.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp6", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen in %s: %w", dt.Netns, err)
	}
	defer ln.Close()
	var conn net.Conn
	if err := sn.ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IP(st.SIR.AsSlice())}}
		var err error
		conn, err = d.Dial("tcp6", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("tcp connect %s -> %s: %w", src, dst, err)
	}
	srv, err := ln.Accept()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tcp accept in %s: %w", dt.Netns, err)
	}
	fs := &FlowStats{Name: "tcp " + src + " -> " + dst, Kind: "tcp", From: src, To: dst, Interval: Duration(interval)}
	stream(ctx, fs, conn, srv, chunk, interval)
	conn.Close()
	srv.Close()
	return fs, nil
}

// stream sends a chunk numbered and stamped with its send time on w every
// interval until ctx ends, and records every chunk read back on r (the far
// end of the flow, or w itself when the far end echoes) as an arrival in
// fs; then it closes w's sending side, waits for the reader and sums up.
func stream(ctx context.Context, fs *FlowStats, w, r net.Conn, size int, interval time.Duration) {
	var mu sync.Mutex
	var readErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, size)
		for {
			_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(r, buf); err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			now := time.Now()
			seq := int(binary.BigEndian.Uint64(buf))
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:])))
			mu.Lock()
			fs.Arrivals = append(fs.Arrivals, Arrival{Seq: seq, Sent: sent, Recv: now})
			fs.Bytes += int64(size)
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	buf := make([]byte, size)
	var last time.Time
	var writeErr error
loop:
	for seq := 0; ; seq++ {
		now := time.Now()
		binary.BigEndian.PutUint64(buf, uint64(seq))
		binary.BigEndian.PutUint64(buf[8:], uint64(now.UnixNano()))
		if seq == 0 {
			fs.FirstSent = now
		}
		_ = w.SetWriteDeadline(now.Add(10 * time.Second))
		if _, err := w.Write(buf); err != nil {
			writeErr = err
			break
		}
		fs.Sent++
		last = now
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	if tc, ok := w.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	fs.summarise(last)
	if err := errors.Join(writeErr, readErr); err != nil {
		fs.Error = err.Error()
	}
}

func (l *Lab) tasks(a, b string) (*Task, *Task, error) {
	ta, err := l.topo.TaskByName(a)
	if err != nil {
		return nil, nil, err
	}
	tb, err := l.topo.TaskByName(b)
	if err != nil {
		return nil, nil, err
	}
	return ta, tb, nil
}

// WaitReachable pings dst from task src until a reply comes back or the
// timeout ends (neighbour discovery, RA and the mapping settle first).
func (l *Lab) WaitReachable(ctx context.Context, src string, dst netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := l.Ping(ctx, src, dst, 20*time.Millisecond, 5, 100*time.Millisecond)
		if err != nil {
			return err
		}
		if st.Received > 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s cannot reach %s after %v", src, dst, timeout)
		}
	}
}
