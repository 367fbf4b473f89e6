//go:build linux

package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// A TCP flow across a failover. The lab's standby is a replica namespace
// with the task's addresses but none of its TCP state, so a connection
// to the task does not survive its NVE's death: the replica answers the
// connection's next segment with a reset, and the client connects again,
// now to the replica. What the failover demo measures is that path: when
// the client saw the break and how long after the failure its new
// connection carried data.

// TCPFailover is the TCP flow of the failover demo.
type TCPFailover struct {
	// Connections the client opened (1 when nothing broke).
	Connections int `json:"connections"`
	// DialErrors counts connection attempts that failed.
	DialErrors int        `json:"dial_errors"`
	Breaks     []TCPBreak `json:"breaks"`
}

// TCPBreak is one connection that broke and the next one.
type TCPBreak struct {
	// At: the client saw the connection fail (Error says how: a reset
	// from the replica, or no echo for the stall time).
	At    time.Time `json:"at"`
	Error string    `json:"error"`
	// Connected: the next connection was established; FirstEcho: the
	// first chunk came back on it.
	Connected time.Time `json:"connected,omitzero"`
	FirstEcho time.Time `json:"first_echo,omitzero"`
}

// tcpEchoPort is where the failover demo's echo servers listen.
const tcpEchoPort = 5002

// tcpChunk is the echo flow's unit: seq + send time + padding.
const tcpChunk = 64

// echoServer serves TCP echo on addr inside namespace nsName until the
// returned func is called.
func (l *Lab) echoServer(nsName string, addr netip.AddrPort) (func(), error) {
	n, err := l.node(nsName)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if err := n.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp6", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("echo server in %s: %w", nsName, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// tcpReconnecting runs a TCP echo flow from task src to dst until ctx
// ends: a chunk every interval, numbered over all connections; when a
// connection fails (an error, or no echo for stall while chunks are
// outstanding) the client connects again at once and goes on.
func (l *Lab) tcpReconnecting(ctx context.Context, src *Task, dst netip.AddrPort, interval, stall time.Duration) (*FlowStats, *TCPFailover, error) {
	sn, err := l.node(src.Netns)
	if err != nil {
		return nil, nil, err
	}
	fs := &FlowStats{Name: "tcp " + src.Name + " -> " + dst.String() + " (reconnecting)", Kind: "tcp-echo", From: src.Name, To: dst.String(), Interval: Duration(interval)}
	tf := &TCPFailover{}
	var mu sync.Mutex // fs.Arrivals, tf.Breaks
	seq := 0
	var lastSent time.Time
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := sn.ns.Do(func() error {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.IP(src.SIR.AsSlice())}}
			var err error
			c, err = d.DialContext(ctx, "tcp6", dst.String())
			return err
		})
		return c, err
	}
	for ctx.Err() == nil {
		conn, err := dial()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			tf.DialErrors++
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		tf.Connections++
		mu.Lock()
		var brk *TCPBreak
		if n := len(tf.Breaks); n > 0 {
			brk = &tf.Breaks[n-1]
			brk.Connected = time.Now()
		}
		mu.Unlock()
		// One connection: the reader records echoes, the writer sends and
		// watches for a stall.
		var lastEcho time.Time
		var rerr error
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			buf := make([]byte, tcpChunk)
			for {
				if _, err := io.ReadFull(conn, buf); err != nil {
					mu.Lock()
					rerr = err
					mu.Unlock()
					return
				}
				now := time.Now()
				mu.Lock()
				fs.Arrivals = append(fs.Arrivals, Arrival{Seq: int(binary.BigEndian.Uint64(buf)), Sent: time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:]))), Recv: now})
				fs.Bytes += tcpChunk
				lastEcho = now
				if brk != nil && brk.FirstEcho.IsZero() {
					brk.FirstEcho = now
				}
				mu.Unlock()
			}
		}()
		start := time.Now()
		tick := time.NewTicker(interval)
		var broke error
		buf := make([]byte, tcpChunk)
	conn:
		for {
			now := time.Now()
			binary.BigEndian.PutUint64(buf, uint64(seq))
			binary.BigEndian.PutUint64(buf[8:], uint64(now.UnixNano()))
			if seq == 0 {
				fs.FirstSent = now
			}
			_ = conn.SetWriteDeadline(now.Add(stall))
			if _, err := conn.Write(buf); err != nil {
				broke = err
				break
			}
			seq++
			fs.Sent++
			lastSent = now
			select {
			case <-ctx.Done():
				break conn
			case <-readDone:
				mu.Lock()
				broke = rerr
				mu.Unlock()
				break conn
			case <-tick.C:
			}
			mu.Lock()
			quiet := time.Since(lastEcho)
			if lastEcho.IsZero() {
				quiet = time.Since(start)
			}
			mu.Unlock()
			if quiet > stall {
				broke = fmt.Errorf("no echo for %v", stall)
				break
			}
		}
		tick.Stop()
		if broke == nil { // the flow's end: let the last echoes come back
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			<-readDone
			conn.Close()
			break
		}
		at := time.Now()
		conn.Close()
		<-readDone
		if errors.Is(broke, io.EOF) {
			broke = errors.New("closed by the server")
		}
		mu.Lock()
		tf.Breaks = append(tf.Breaks, TCPBreak{At: at, Error: broke.Error()})
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if tf.Connections == 0 {
		return fs, tf, fmt.Errorf("tcp %s -> %s: no connection (%d attempts failed)", src.Name, dst, tf.DialErrors)
	}
	fs.summarise(lastSent)
	return fs, tf, nil
}
