package regproto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ilamesh/ilamesh/ila"
)

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// startServer runs s on a fresh loopback socket until the test ends and
// checks that Run returns nil.
func startServer(t *testing.T, s *Server) netip.AddrPort {
	t.Helper()
	s.Conn = listen(t)
	if s.Keys == nil {
		s.Keys = testKeys
	}
	if s.KeyID == 0 {
		s.KeyID, s.Secret = 99, srvSecret
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return addrOf(s.Conn)
}

// grant is a handler that accepts everything, granting at most 30 units
// and echoing the VM-ID and addresses.
func grant(_ context.Context, _ netip.AddrPort, req *Message) *Message {
	r := req.Reply(StatusAccepted, ReasonNone)
	r.Lifetime = min(req.Lifetime, 30)
	r.Addrs = req.Addrs
	r.NVE = "mapsrv"
	return r
}

func newClient(t *testing.T, srv netip.AddrPort) *Client {
	t.Helper()
	c := &Client{Server: srv, KeyID: 7, Secret: nveSecret, Keys: testKeys, ServerKeyID: 99, Timeout: 200 * time.Millisecond}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServerClientRoundTrip(t *testing.T) {
	var got atomic.Pointer[Message]
	var from atomic.Value
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		got.Store(req)
		from.Store(f)
		return grant(ctx, f, req)
	})}
	srv := startServer(t, s)
	c := newClient(t, srv)
	req := fullRequest()
	req.Seq, req.Timestamp, req.KeyID = 0, time.Time{}, 0
	before := time.Now()
	rep, err := c.Do(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Type: TypeReply, KeyID: 99, NVE: "mapsrv", VMID: req.VMID, Tenant: req.Tenant, Domain: req.Domain, Addrs: req.Addrs, Lifetime: 30, Status: StatusAccepted}
	if diff := cmp.Diff(want, rep, addrCmp, cmpopts.IgnoreFields(Message{}, "Seq", "Timestamp")); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	in := got.Load()
	if in == nil {
		t.Fatal("handler not called")
	}
	if rep.Seq != in.Seq || in.Seq < uint64(before.UnixNano()) {
		t.Errorf("reply seq %d, request seq %d (client start %d)", rep.Seq, in.Seq, before.UnixNano())
	}
	if in.Timestamp.Before(before.Add(-time.Second)) || rep.Timestamp.Before(before.Add(-time.Second)) {
		t.Errorf("timestamps not set: request %v reply %v", in.Timestamp, rep.Timestamp)
	}
	wantReq := fullRequest()
	wantReq.Seq, wantReq.Timestamp = in.Seq, in.Timestamp
	if diff := cmp.Diff(wantReq, in, addrCmp); diff != "" {
		t.Errorf("request seen by the handler (-want +got):\n%s", diff)
	}
	if f := from.Load().(netip.AddrPort); f.Port() != addrOf(c.Conn).Port() || !f.Addr().IsLoopback() {
		t.Errorf("handler saw the request from %v, client socket is %v", f, addrOf(c.Conn))
	}
	if req.Seq != 0 || req.KeyID != 0 {
		t.Error("Do modified the request")
	}
	// A second request gets a larger sequence number.
	rep2, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Seq <= rep.Seq || rep2.Lifetime != 1 {
		t.Errorf("second reply seq %d lifetime %d; first seq %d", rep2.Seq, rep2.Lifetime, rep.Seq)
	}
	st := s.Stats()
	if diff := cmp.Diff(ServerStats{Received: 2, Accepted: 2, Rejected: map[Reason]uint64{}}, st); diff != "" {
		t.Errorf("server stats (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ClientStats{Sent: 2, Replies: 2}, c.Stats()); diff != "" {
		t.Errorf("client stats (-want +got):\n%s", diff)
	}
}

func TestServerFillsNVEAndChecksIt(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		r := req.Reply(StatusAccepted, ReasonNone)
		r.NVE = req.NVE // tells the test what the handler saw
		return r
	})}
	c := newClient(t, startServer(t, s))
	rep, err := c.Do(t.Context(), &Message{VMID: "a", Lifetime: 1})
	if err != nil || rep.NVE != "nve-a" {
		t.Errorf("request without NVE option: handler saw NVE %q (err %v), want the key owner nve-a", rep.NVE, err)
	}
	rep, err = c.Do(t.Context(), &Message{VMID: "a", NVE: "nve-b", Lifetime: 1})
	if err != nil || rep.Status != StatusRejected || rep.Reason != ReasonNotAuthorized {
		t.Errorf("request naming another NVE: reply %+v, %v; want rejected, not authorized", rep, err)
	}
	if !errors.Is(rep.Err(), ErrRejected) {
		t.Errorf("Err() = %v", rep.Err())
	}
}

func TestConcurrentClients(t *testing.T) {
	keys := KeyFile{99: testKeys[99]}
	const nClients, nGoroutines, nRequests = 4, 8, 25
	for i := 1; i <= nClients; i++ {
		keys[uint32(i)] = KeyEntry{NVE: fmt.Sprintf("nve-%d", i), Secret: []byte(fmt.Sprintf("secret-of-nve-%d-0123456789", i))}
	}
	s := &Server{Keys: keys, MaxInFlight: 4, Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		r := grant(ctx, f, req)
		r.NVE = req.NVE
		return r
	})}
	srv := startServer(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, nClients*nGoroutines*nRequests)
	for i := 1; i <= nClients; i++ {
		c := &Client{Server: srv, KeyID: uint32(i), Secret: keys[uint32(i)].Secret, Keys: keys, ServerKeyID: 99, Timeout: time.Second}
		t.Cleanup(func() { c.Close() })
		for g := 0; g < nGoroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < nRequests; r++ {
					vm := fmt.Sprintf("vm-%d-%d-%d", i, g, r)
					addr := netip.AddrFrom4([4]byte{10, byte(i), byte(g), byte(r)})
					rep, err := c.Do(t.Context(), &Message{VMID: vm, Addrs: []netip.Addr{addr}, Lifetime: uint16(r)})
					switch {
					case err != nil:
						errs <- fmt.Errorf("%s: %w", vm, err)
					case rep.VMID != vm || rep.NVE != keys[uint32(i)].NVE || len(rep.Addrs) != 1 || rep.Addrs[0] != addr || rep.Lifetime != uint16(r) || rep.Status != StatusAccepted:
						errs <- fmt.Errorf("%s: got the reply %+v", vm, rep)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := uint64(nClients * nGoroutines * nRequests)
	if st := s.Stats(); st.Accepted < total || st.Replays != 0 || st.Malformed != 0 || st.AuthFailures != 0 {
		t.Errorf("server stats %+v, want %d accepted and no failures", st, total)
	}
}

func TestClientRetriesAfterLostReply(t *testing.T) {
	var calls atomic.Int32
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		if calls.Add(1) == 1 {
			return nil // the first reply is lost
		}
		return grant(ctx, f, req)
	})}
	c := newClient(t, startServer(t, s))
	c.Timeout = 100 * time.Millisecond
	rep, err := c.Do(t.Context(), &Message{VMID: "retry", Lifetime: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VMID != "retry" || rep.Lifetime != 2 || calls.Load() != 2 {
		t.Errorf("reply %+v after %d handler calls", rep, calls.Load())
	}
	if diff := cmp.Diff(ClientStats{Sent: 2, Retries: 1, Replies: 1}, c.Stats()); diff != "" {
		t.Errorf("client stats (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.NoReply != 1 || st.Accepted != 1 || st.Replays != 0 {
		t.Errorf("server stats %+v: want 1 unanswered, 1 accepted, no replay (retries use new sequence numbers)", st)
	}
}

func TestClientLateReplyToEarlierTry(t *testing.T) {
	// The first try is answered late, after the client has retried: the
	// late reply ends the wait, and the reply to the retry is dropped.
	var calls atomic.Int32
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		if calls.Add(1) == 1 {
			time.Sleep(150 * time.Millisecond)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
		return grant(ctx, f, req)
	})}
	c := newClient(t, startServer(t, s))
	c.Timeout = 100 * time.Millisecond
	rep, err := c.Do(t.Context(), &Message{VMID: "late", Lifetime: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VMID != "late" {
		t.Errorf("reply %+v", rep)
	}
	if st := c.Stats(); st.Retries < 1 || st.Replies != 1 {
		t.Errorf("client stats %+v, want a retry and one reply", st)
	}
}

func TestClientTimeoutAndCancel(t *testing.T) {
	silent := listen(t) // nobody reads it
	c := newClient(t, addrOf(silent))
	c.Timeout, c.Retries = 20*time.Millisecond, 2
	_, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1})
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("error %v, want ErrTimeout", err)
	}
	if st := c.Stats(); st.Sent != 3 || st.Retries != 2 {
		t.Errorf("stats %+v, want 3 sent with 2 retries", st)
	}
	c.Retries = -1
	if _, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1}); !errors.Is(err, ErrTimeout) {
		t.Errorf("no retries: error %v", err)
	}
	if st := c.Stats(); st.Sent != 4 {
		t.Errorf("with Retries -1, %d sent in total, want 4", st.Sent)
	}

	c.Timeout, c.Retries = time.Minute, 0
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Do(ctx, &Message{VMID: "x", Lifetime: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Do returned %v after the context ended", d)
	}
}

func TestClientDropsForgedReplies(t *testing.T) {
	// A fake server answering with: a reply signed by an NVE key (valid
	// HMAC, wrong key id), a reply with a bad HMAC, a request, and finally
	// a good reply. Only the last is returned.
	fake := listen(t)
	c := newClient(t, addrOf(fake))
	c.Timeout = 2 * time.Second
	go func() {
		var buf [2048]byte
		n, from, err := fake.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			return
		}
		req, err := Parse(buf[:n], testKeys)
		if err != nil {
			return
		}
		send := func(m *Message, secret []byte) {
			b, _ := m.Marshal(secret)
			fake.WriteToUDPAddrPort(b, from)
		}
		send(&Message{Type: TypeReply, Seq: req.Seq, KeyID: 7, VMID: "forged-nve-key", Status: StatusAccepted}, nveSecret)
		send(&Message{Type: TypeReply, Seq: req.Seq, KeyID: 99, VMID: "forged-bad-hmac", Status: StatusAccepted}, nveSecret)
		send(&Message{Type: TypeRequest, Seq: req.Seq, KeyID: 99, VMID: "a-request"}, srvSecret)
		send(&Message{Type: TypeReply, Seq: req.Seq + 1000, KeyID: 99, VMID: "other-seq", Status: StatusAccepted}, srvSecret)
		fake.WriteToUDPAddrPort([]byte("garbage"), from)
		send(&Message{Type: TypeReply, Seq: req.Seq, KeyID: 99, VMID: "genuine", Status: StatusAccepted}, srvSecret)
	}()
	rep, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VMID != "genuine" {
		t.Errorf("got reply %q, want the genuine one", rep.VMID)
	}
	if st := c.Stats(); st.Dropped != 5 || st.Replies != 1 {
		t.Errorf("client stats %+v, want 5 dropped and 1 reply", st)
	}
}

func TestClientDropsRepliesFromElsewhere(t *testing.T) {
	fake, other := listen(t), listen(t)
	c := newClient(t, addrOf(fake))
	c.Timeout, c.Retries = 300*time.Millisecond, -1
	go func() {
		var buf [2048]byte
		n, from, err := fake.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			return
		}
		req, err := Parse(buf[:n], testKeys)
		if err != nil {
			return
		}
		b, _ := (&Message{Type: TypeReply, Seq: req.Seq, KeyID: 99, Status: StatusAccepted}).Marshal(srvSecret)
		other.WriteToUDPAddrPort(b, from)
	}()
	if _, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1}); !errors.Is(err, ErrTimeout) {
		t.Errorf("error %v, want ErrTimeout (the only reply came from another address)", err)
	}
	if st := c.Stats(); st.Dropped != 1 {
		t.Errorf("client stats %+v, want 1 dropped", st)
	}
}

// rawPeer sends datagrams and reads signed replies.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
	to   netip.AddrPort
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, p.to); err != nil {
		p.t.Fatal(err)
	}
}

// reply waits up to d for a reply; nil if none.
func (p *rawPeer) reply(d time.Duration) *Message {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(d))
	var buf [2048]byte
	n, _, err := p.conn.ReadFromUDPAddrPort(buf[:])
	if err != nil {
		return nil
	}
	m, err := Parse(buf[:n], KeyFile{99: testKeys[99]})
	if err != nil {
		p.t.Fatalf("server reply does not verify with the server key: %v", err)
	}
	return m
}

func TestServerRefusals(t *testing.T) {
	release := make(chan struct{})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	s := &Server{MaxInFlight: 1, Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		if req.VMID == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return grant(ctx, f, req)
	})}
	p := &rawPeer{t: t, conn: listen(t), to: startServer(t, s)}

	now := time.Now()
	req := func(seq uint64, vm string) *Message {
		return &Message{Type: TypeRequest, Seq: seq, Timestamp: now, KeyID: 7, VMID: vm, Lifetime: 10}
	}
	sign := func(m *Message, secret []byte) []byte {
		b, err := m.Marshal(secret)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Occupy the only handler slot: refusals must still be answered.
	p.send(sign(req(100, "block"), nveSecret))
	time.Sleep(50 * time.Millisecond)

	good := sign(req(101, "ok"), nveSecret)
	truncated := sign(req(102, "cut"), nveSecret)
	truncated = truncated[:len(truncated)-1]
	badMAC := sign(req(103, "forged"), srvSecret)
	unknownKey := sign(&Message{Type: TypeRequest, Seq: 104, Timestamp: now, KeyID: 8, Lifetime: 1}, nveSecret)
	oldTS := sign(&Message{Type: TypeRequest, Seq: 105, Timestamp: now.Add(-time.Minute), KeyID: 7, Lifetime: 1}, nveSecret)
	oversize := make([]byte, MaxMessageLen+100)
	copy(oversize, sign(req(106, "big"), nveSecret))
	aReply := sign(&Message{Type: TypeReply, Seq: 107, Timestamp: now, KeyID: 7, Status: StatusAccepted}, nveSecret)
	badOption := raw(TypeRequest, 0, 7, lifetime, opt(100, 1))
	// raw uses seq 42 and testTime; fine for malformed.

	tests := []struct {
		name string
		b    []byte
		want *Message // nil: no reply expected
	}{
		// Nothing unauthenticated is answered: a signed refusal echoing
		// a chosen sequence number would refuse an NVE's pending request.
		{"truncated", truncated, nil},
		{"short garbage", []byte("hello"), nil},
		{"header only", truncated[:HeaderLen], nil},
		{"truncated to the minimum length", truncated[:MinMessageLen], nil},
		{"bad hmac", badMAC, nil},
		{"unknown key", unknownKey, nil},
		{"unknown option", badOption, nil},
		{"oversize", oversize, nil},
		{"a reply", aReply, nil},
		{"stale timestamp", oldTS, &Message{Seq: 105, Status: StatusRejected, Reason: ReasonReplay}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.t = t
			p.send(tc.b)
			wait := time.Second
			if tc.want == nil {
				wait = 100 * time.Millisecond
			}
			got := p.reply(wait)
			if tc.want == nil {
				if got != nil {
					t.Errorf("got a reply %+v, want none", got)
				}
				return
			}
			if got == nil {
				t.Fatal("no reply")
			}
			if diff := cmp.Diff(tc.want, got, addrCmp, cmpopts.IgnoreFields(Message{}, "Type", "KeyID", "Timestamp", "VMID", "Tenant", "Domain")); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if got.Type != TypeReply || got.KeyID != 99 {
				t.Errorf("reply type %v key %d", got.Type, got.KeyID)
			}
		})
	}
	p.t = t

	// The replay window: the good request once, then again.
	p.send(good)
	p.send(good)
	time.Sleep(50 * time.Millisecond)
	released.Do(func() { close(release) })
	var replies []*Message
	for len(replies) < 3 {
		r := p.reply(2 * time.Second)
		if r == nil {
			break
		}
		replies = append(replies, r)
	}
	byReason := map[string]int{}
	for _, r := range replies {
		byReason[fmt.Sprint(r.Seq, " ", r.Status, " ", r.Reason)]++
	}
	wantReplies := map[string]int{"100 accepted none": 1, "101 accepted none": 1, "101 rejected replay": 1}
	if diff := cmp.Diff(wantReplies, byReason); diff != "" {
		t.Errorf("replies to the blocked request and the replayed one (-want +got):\n%s", diff)
	}

	want := ServerStats{
		Received: 13, Accepted: 2, Malformed: 6, AuthFailures: 2, Replays: 2, Ignored: 1,
		Rejected: map[Reason]uint64{ReasonReplay: 2},
	}
	if diff := cmp.Diff(want, s.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if got := s.Stats().RejectedTotal(); got != 2 {
		t.Errorf("RejectedTotal = %d, want 2", got)
	}
}

func TestServerReplyMarshalFailure(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		r := req.Reply(StatusAccepted, ReasonNone)
		r.Addrs = []netip.Addr{{}} // cannot be marshalled
		return r
	})}
	c := newClient(t, startServer(t, s))
	rep, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != StatusRejected || rep.Reason != ReasonInternal {
		t.Errorf("reply %v/%v, want rejected/internal", rep.Status, rep.Reason)
	}
	if st := s.Stats(); st.SendErrors != 1 || st.Rejected[ReasonInternal] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestNotification(t *testing.T) {
	// mapsrv (key 99) notifies NVE a (whose server signs with key 7) that
	// a task moved; the NVE refuses a notification signed by another NVE.
	var got atomic.Pointer[Message]
	nveSide := &Server{KeyID: 7, Secret: nveSecret, Keys: KeyFile{99: testKeys[99]}, Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		got.Store(req)
		return req.Reply(StatusAccepted, ReasonNone)
	})}
	addr := startServer(t, nveSide)
	mapsrv := &Client{Server: addr, KeyID: 99, Secret: srvSecret, Keys: KeyFile{7: testKeys[7]}, ServerKeyID: 7}
	t.Cleanup(func() { mapsrv.Close() })
	n := &Message{Notify: true, VMID: "web-1", Tenant: "acme", Locator: ila.Locator(0x2001_0db8_0000_0002), Mode: MoveHot, Lifetime: 15}
	rep, err := mapsrv.Do(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != StatusAccepted {
		t.Errorf("reply %+v", rep)
	}
	if m := got.Load(); m == nil || !m.Notify || m.Locator != n.Locator || m.NVE != "mapsrv" || m.Mode != MoveHot {
		t.Errorf("NVE saw %+v", m)
	}
	impostor := &Client{Server: addr, KeyID: 7, Secret: nveSecret, Keys: KeyFile{7: testKeys[7]}, Timeout: 200 * time.Millisecond, Retries: -1}
	t.Cleanup(func() { impostor.Close() })
	rep, err = impostor.Do(t.Context(), n)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("notification signed by an NVE key: reply %+v, %v; want no answer", rep, err)
	}
	if st := nveSide.Stats(); st.AuthFailures != 1 {
		t.Errorf("NVE side stats %+v, want 1 authentication failure", st)
	}
}

func TestServerConfigErrors(t *testing.T) {
	conn := listen(t)
	h := HandlerFunc(grant)
	tests := []struct {
		name string
		s    *Server
	}{
		{"no conn", &Server{Keys: testKeys, KeyID: 99, Secret: srvSecret, Handler: h}},
		{"no keys", &Server{Conn: conn, KeyID: 99, Secret: srvSecret, Handler: h}},
		{"no key id", &Server{Conn: conn, Keys: testKeys, Secret: srvSecret, Handler: h}},
		{"no secret", &Server{Conn: conn, Keys: testKeys, KeyID: 99, Handler: h}},
		{"no handler", &Server{Conn: conn, Keys: testKeys, KeyID: 99, Secret: srvSecret}},
		{"negative max in flight", &Server{Conn: conn, Keys: testKeys, KeyID: 99, Secret: srvSecret, Handler: h, MaxInFlight: -1}},
	}
	for _, tc := range tests {
		if err := tc.s.Run(t.Context()); err == nil {
			t.Errorf("%s: Run succeeded", tc.name)
		}
	}
	// A closed socket ends Run with an error.
	closed := listen(t)
	closed.Close()
	if err := (&Server{Conn: closed, Keys: testKeys, KeyID: 99, Secret: srvSecret, Handler: h}).Run(t.Context()); err == nil {
		t.Error("Run on a closed socket succeeded")
	}
}

func TestClientConfigErrors(t *testing.T) {
	srv := netip.MustParseAddrPort("127.0.0.1:9")
	for _, c := range []*Client{
		{KeyID: 7, Secret: nveSecret, Keys: testKeys},
		{Server: srv, Secret: nveSecret, Keys: testKeys},
		{Server: srv, KeyID: 7, Keys: testKeys},
		{Server: srv, KeyID: 7, Secret: nveSecret},
	} {
		if _, err := c.Do(t.Context(), &Message{Lifetime: 1}); err == nil {
			t.Errorf("Do with %+v succeeded", c)
		}
	}
	c := &Client{Server: srv, KeyID: 7, Secret: nveSecret, Keys: testKeys, Retries: -1, Timeout: time.Millisecond}
	defer c.Close()
	if _, err := c.Do(t.Context(), &Message{Lifetime: 1, Mode: 9}); err == nil {
		t.Error("Do with an invalid message succeeded")
	}
}
