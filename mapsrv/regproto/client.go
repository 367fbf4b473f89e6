package regproto

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Client defaults.
const (
	DefaultTimeout = 500 * time.Millisecond
	DefaultRetries = 3
	// DefaultSwitchAfter is how many tries in a row a server with
	// Fallbacks may leave unanswered before the Client uses the next one:
	// one lost datagram is not a dead replica, two are taken as one.
	DefaultSwitchAfter = 2
)

// Client sends Registration Requests and waits for their replies: an NVE
// registering tasks, or the mapping service notifying a previous NVE.
//
// Do is safe for concurrent use by several goroutines sharing one socket.
// There is no background goroutine: whichever Do call is waiting reads the
// socket for everyone and hands each reply to the call that waits for its
// sequence number. The Client must be the only reader of Conn.
//
// Sequence numbers start at the Unix time in nanoseconds when the Client
// is first used and grow by one per message, so that a restarted sender
// does not fall below what the receiver's replay window has seen. Each
// sender (each Client) should have its own key id: two senders sharing a
// key id would trip over each other's sequence numbers. After a reply
// refusing a request as a replay, the Client moves its counter to at
// least its clock plus ResyncAhead and sends the request once more at
// once (a restarted server, or a counter left behind by a clock that
// jumped back, must not lock the sender out).
//
// With Fallbacks (the other replicas of a mapping service), the Client
// speaks to one server at a time: the current one, Server at first. When
// the current server leaves SwitchAfter tries in a row unanswered (a try
// that timed out, or whose context ended by its deadline: a heartbeat),
// the next address becomes the current one, for every caller, and stays
// it while it answers: the Client never returns to a server by
// preference, only when the one it uses stops answering (after the last
// address comes Server again). A request whose try timed out is sent
// again to whichever server is current then. One sequence counter serves
// every server, so each one only ever sees it grow.
type Client struct {
	// Conn is the socket; nil makes Do open one (closed by Close).
	Conn *net.UDPConn
	// Server is where requests go (the first choice with Fallbacks);
	// replies from any other address than Server and Fallbacks are
	// dropped.
	Server netip.AddrPort
	// Fallbacks are the other addresses of the same service (its other
	// replicas), in the order they are tried.
	Fallbacks []netip.AddrPort
	// SwitchAfter is how many tries in a row the current server may leave
	// unanswered before the next address is used (0: DefaultSwitchAfter).
	SwitchAfter int
	// OnSwitch, if set, is called when the Client moves to another
	// server, with the number of tries the old one left unanswered (from
	// the Do call that saw the last of them; it must not call Do).
	OnSwitch func(from, to netip.AddrPort, unanswered int)
	KeyID    uint32 // key that signs requests
	Secret   []byte // its secret
	// PrivateKey, if set, signs requests with Ed25519 instead of Secret
	// (the mapping service's move notifications).
	PrivateKey ed25519.PrivateKey
	// Keys verifies the replies' HMACs.
	Keys Keys
	// ServerKeyID, if not zero, is the only key id accepted on replies.
	ServerKeyID uint32
	// Timeout is how long each try waits for the reply (0: DefaultTimeout).
	Timeout time.Duration
	// Retries is how many times a request is sent again after a timeout
	// (0: DefaultRetries; negative: none). Each retry is a new message
	// with a new sequence number and timestamp; a reply to any of them
	// ends the wait.
	Retries int

	initOnce sync.Once
	initErr  error
	ownConn  bool
	turn     chan struct{} // held (capacity 1) by the call reading the socket
	rbuf     []byte        // read buffer, used by the turn holder
	sign     *signer
	seq      atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan *Message

	servers []netip.AddrPort // Server, then Fallbacks (unmapped)
	smu     sync.Mutex       // guards cur and misses
	cur     int              // index in servers of the current server
	misses  int              // tries in a row the current server left unanswered

	sent, retried, replies, dropped, resyncs, switches atomic.Uint64
}

// ClientStats are a Client's counters.
type ClientStats struct {
	Sent    uint64 // requests sent, retries included
	Retries uint64 // of which retries
	Replies uint64 // valid replies matched to a waiting request
	Dropped uint64 // datagrams dropped: unparsable, bad HMAC, wrong sender or key, no request waiting
	Resyncs uint64 // replay refusals after which the sequence counter moved ahead
	// Switches counts moves to another server (Fallbacks).
	Switches uint64
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{Sent: c.sent.Load(), Retries: c.retried.Load(), Replies: c.replies.Load(), Dropped: c.dropped.Load(), Resyncs: c.resyncs.Load(), Switches: c.switches.Load()}
}

// Current returns the server requests go to now (Server until the Client
// switched to a fallback).
func (c *Client) Current() netip.AddrPort {
	if c.init() != nil {
		return c.Server
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.servers[c.cur]
}

// Servers returns Server and the Fallbacks, in order.
func (c *Client) Servers() []netip.AddrPort {
	if c.init() != nil {
		return nil
	}
	return append([]netip.AddrPort(nil), c.servers...)
}

// current returns the current server.
func (c *Client) current() netip.AddrPort {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.servers[c.cur]
}

// answered records a reply from srv: the current server's run of
// unanswered tries ends.
func (c *Client) answered(srv netip.AddrPort) {
	c.smu.Lock()
	if c.servers[c.cur] == srv {
		c.misses = 0
	}
	c.smu.Unlock()
}

// unanswered records a try srv left unanswered and moves to the next
// server after SwitchAfter of them in a row. Tries sent to a server that
// is no longer the current one count for nothing.
func (c *Client) unanswered(srv netip.AddrPort) {
	c.smu.Lock()
	if len(c.servers) < 2 || c.servers[c.cur] != srv {
		c.smu.Unlock()
		return
	}
	c.misses++
	limit := c.SwitchAfter
	if limit <= 0 {
		limit = DefaultSwitchAfter
	}
	if c.misses < limit {
		c.smu.Unlock()
		return
	}
	n := c.misses
	c.cur = (c.cur + 1) % len(c.servers)
	c.misses = 0
	to := c.servers[c.cur]
	c.smu.Unlock()
	c.switches.Add(1)
	if c.OnSwitch != nil {
		c.OnSwitch(srv, to, n)
	}
}

// isServer reports whether a reply from addr may be accepted.
func (c *Client) isServer(addr netip.AddrPort) bool {
	for _, s := range c.servers {
		if s == addr {
			return true
		}
	}
	return false
}

func (c *Client) init() error {
	c.initOnce.Do(func() {
		switch {
		case !c.Server.IsValid():
			c.initErr = errors.New("registration client: no server address")
			return
		case c.KeyID == 0 || (len(c.Secret) == 0 && c.PrivateKey == nil):
			c.initErr = errors.New("registration client: no signing key")
			return
		case c.Keys == nil:
			c.initErr = errors.New("registration client: no keys to verify replies")
			return
		}
		c.Server = netip.AddrPortFrom(c.Server.Addr().Unmap(), c.Server.Port())
		c.servers = []netip.AddrPort{c.Server}
		for _, f := range c.Fallbacks {
			if !f.IsValid() {
				c.initErr = fmt.Errorf("registration client: fallback address %v: invalid", f)
				return
			}
			f = netip.AddrPortFrom(f.Addr().Unmap(), f.Port())
			if f.Addr().Is4() != c.Server.Addr().Is4() {
				c.initErr = fmt.Errorf("registration client: fallback %v and server %v: one socket cannot reach both (IPv4 and IPv6)", f, c.Server)
				return
			}
			if !c.isServer(f) {
				c.servers = append(c.servers, f)
			}
		}
		c.turn = make(chan struct{}, 1)
		c.rbuf = make([]byte, MaxMessageLen+1)
		c.sign = &signer{secret: c.Secret, priv: c.PrivateKey}
		c.pending = map[uint64]chan *Message{}
		if c.Conn == nil {
			network := "udp6"
			if c.Server.Addr().Is4() {
				network = "udp4"
			}
			conn, err := net.ListenUDP(network, nil)
			if err != nil {
				c.initErr = fmt.Errorf("registration client socket: %w", err)
				return
			}
			c.Conn, c.ownConn = conn, true
		}
	})
	return c.initErr
}

// Close closes the socket if the Client opened it.
func (c *Client) Close() error {
	if c.ownConn {
		return c.Conn.Close()
	}
	return nil
}

// resync moves the sequence counter to at least the clock plus
// ResyncAhead (Unix nanoseconds), and past SeqReserve above where it is:
// a counter already ahead of the clock (an earlier resync) made the
// server set its ceiling SeqReserve above that, so the clock alone would
// not get past it after the server's next restart.
func (c *Client) resync() {
	clock := uint64(time.Now().Add(ResyncAhead).UnixNano())
	for {
		cur := c.seq.Load()
		want := max(clock, cur+uint64(SeqReserve)+1)
		if c.seq.CompareAndSwap(cur, want) {
			return
		}
	}
}

func (c *Client) nextSeq() uint64 {
	c.seq.CompareAndSwap(0, uint64(time.Now().UnixNano()))
	return c.seq.Add(1)
}

// Do sends req (Type defaults to TypeRequest) with a fresh sequence number
// and timestamp, signed with the Client's key, and returns the verified
// reply with the matching sequence number. req is not modified. A rejected
// reply is returned as is, not as an error (see Message.Err). After all
// tries time out the error matches ErrTimeout; when ctx ends, ctx.Err().
func (c *Client) Do(ctx context.Context, req *Message) (*Message, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	m := *req
	if m.Type == 0 {
		m.Type = TypeRequest
	}
	m.KeyID = c.KeyID
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	retries := c.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}

	ch := make(chan *Message, 1)
	var seqs []uint64
	defer func() {
		c.mu.Lock()
		for _, s := range seqs {
			delete(c.pending, s)
		}
		c.mu.Unlock()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	resynced := false
	// got returns the reply to hand back, or nil to send again after a
	// replay refusal (once).
	got := func(r *Message) *Message {
		if r.Status.Accepted() || r.Reason != ReasonReplay || resynced {
			return r
		}
		resynced = true
		c.resyncs.Add(1)
		c.resync()
		return nil
	}
	var srv netip.AddrPort
	for try := 0; try <= retries; try++ {
		srv = c.current()
		m.Seq = c.nextSeq()
		m.Timestamp = time.Now()
		b, err := c.sign.marshal(&m)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.pending[m.Seq] = ch
		c.mu.Unlock()
		seqs = append(seqs, m.Seq)
		if _, err := c.Conn.WriteToUDPAddrPort(b, srv); err != nil {
			// An error reported on the socket (an ICMP unreachable of an
			// earlier datagram) is one more sign the server is gone.
			c.unanswered(srv)
			return nil, fmt.Errorf("send registration request to %v: %w", srv, err)
		}
		c.sent.Add(1)
		if try > 0 {
			c.retried.Add(1)
		}
		timer.Reset(timeout)
		deadline := time.Now().Add(timeout)
	wait:
		for {
			select {
			case r := <-ch:
				if r = got(r); r != nil {
					return r, nil
				}
				try--
				break wait
			default:
			}
			select {
			case r := <-ch:
				if r = got(r); r != nil {
					return r, nil
				}
				try--
				break wait
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					c.unanswered(srv) // the caller's bound for this try: a heartbeat
				}
				return nil, ctx.Err()
			case <-timer.C:
				c.unanswered(srv)
				break wait
			case c.turn <- struct{}{}:
				c.readOne(ctx, deadline)
				<-c.turn
			}
		}
	}
	if len(c.servers) > 1 {
		return nil, fmt.Errorf("registration request to %v (last tried %v): %d tries of %v: %w", c.servers, srv, retries+1, timeout, ErrTimeout)
	}
	return nil, fmt.Errorf("registration request to %v: %d tries of %v: %w", c.Server, retries+1, timeout, ErrTimeout)
}

// readOne reads one datagram (or times out at deadline or when ctx ends)
// and hands a valid reply to the call waiting for it. The caller holds the
// turn.
func (c *Client) readOne(ctx context.Context, deadline time.Time) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := c.rbuf // the turn holder's; Parse does not alias it
	n, from, err := c.Conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		// Timeouts end this turn. Other errors (ICMP port unreachable
		// reported on the socket, a closed socket) would repeat at once:
		// wait a little so that the callers time out normally.
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t := time.NewTimer(min(time.Until(deadline), 10*time.Millisecond))
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		return
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if !c.isServer(from) {
		c.dropped.Add(1)
		return
	}
	rep, err := Parse(buf[:n], c.Keys)
	if err != nil || rep.Type != TypeReply || (c.ServerKeyID != 0 && rep.KeyID != c.ServerKeyID) {
		c.dropped.Add(1)
		return
	}
	c.mu.Lock()
	ch, ok := c.pending[rep.Seq]
	if ok {
		delete(c.pending, rep.Seq) // a duplicate reply is dropped
	}
	c.mu.Unlock()
	if !ok {
		c.dropped.Add(1)
		return
	}
	c.replies.Add(1) // before the hand-over, so that the caller sees it counted
	c.answered(from)
	select {
	case ch <- rep:
	default:
		c.replies.Add(^uint64(0))
		c.dropped.Add(1)
	}
}
