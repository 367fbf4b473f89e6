package main

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connLimiter is a listener that holds at most max connections in all and
// at most perHost from one remote address. A connection over either limit
// is accepted and closed at once: it costs no file descriptor beyond the
// moment, and it does not wait in the kernel's backlog in front of
// well-behaved clients.
type connLimiter struct {
	net.Listener
	max, perHost int

	mu      sync.Mutex
	open    int
	perAddr map[netip.Addr]int
	refused atomic.Uint64
}

func newConnLimiter(l net.Listener, max, perHost int) *connLimiter {
	return &connLimiter{Listener: l, max: max, perHost: perHost, perAddr: map[netip.Addr]int{}}
}

// Accept returns the next connection within the limits.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var a netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			a = ap.Addr().Unmap()
		}
		l.mu.Lock()
		ok := l.open < l.max && l.perAddr[a] < l.perHost
		if ok {
			l.open++
			l.perAddr[a]++
		}
		l.mu.Unlock()
		if !ok {
			l.refused.Add(1)
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l, addr: a}, nil
	}
}

func (l *connLimiter) release(a netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.perAddr[a]--; l.perAddr[a] <= 0 {
		delete(l.perAddr, a)
	}
	l.mu.Unlock()
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	addr netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

// fdBoundConns caps a connection limit to half the process's file
// descriptor limit, so that the API cannot take the descriptors the
// embedded etcd needs for its WAL, snapshots and client connections.
func fdBoundConns(want int) int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return want
	}
	if q := r.Cur / 2; q < uint64(want) {
		return max(int(q), 1)
	}
	return want
}

// streamDeadlines lifts the server's read and write deadlines for the
// watch stream (GET /v1/watch), which lives as long as its client wants;
// every other request keeps them.
func streamDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/watch" {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}
