package regproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Handler answers authenticated, replay-checked requests.
type Handler interface {
	// Handle returns the reply to req (see Message.Reply), or nil to send
	// none. The Server sets the reply's Type, Seq, KeyID and Timestamp.
	// Handle is called concurrently. req.NVE is the name the keys give for
	// req.KeyID.
	Handle(ctx context.Context, from netip.AddrPort, req *Message) *Message
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from netip.AddrPort, req *Message) *Message

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, from netip.AddrPort, req *Message) *Message {
	return f(ctx, from, req)
}

// DefaultMaxInFlight is the default bound on concurrent Handler calls.
const DefaultMaxInFlight = 64

// Server answers Registration Requests on a UDP socket: the mapping
// service, and an NVE receiving move notifications.
//
// For every datagram it parses and authenticates the message, refuses
// replays, and passes the request to Handler on a goroutine (at most
// MaxInFlight at once; the read loop waits for a free slot), then signs
// and sends the reply. A datagram that is malformed or fails
// authentication gets no answer at all: a signed reply echoing a
// sequence number anyone chose would let anyone make the server sign a
// refusal of a request an NVE has in flight. An authenticated request
// that is replayed or names an NVE other than its key's owner is answered
// inline with a signed Rejected reply; replies received are dropped.
// Every outcome is counted (Stats).
//
// With a SeqStore, the Server refuses after a restart the requests its
// previous run may have accepted: before a request reaches the Handler,
// the stored ceiling of its key id covers its sequence number.
type Server struct {
	Conn    *net.UDPConn
	Keys    Keys   // verifies requests
	KeyID   uint32 // key that signs replies
	Secret  []byte // secret of KeyID
	Handler Handler
	Logger  *slog.Logger  // nil: discard
	Window  *ReplayWindow // nil: a window with the default skew, private to Run
	// MaxInFlight bounds concurrent Handler calls; 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
	// SeqStore, if not nil, persists the replay window's high-water
	// marks across restarts. Run loads it first and fails if it cannot.
	SeqStore SeqStore

	signOnce sync.Once
	sign     *signer

	received, accepted, malformed, authFailures, replays atomic.Uint64
	ignored, noReply, sendErrors                         atomic.Uint64
	rejected                                             [256]atomic.Uint64
}

// ServerStats are a Server's counters since it was created.
type ServerStats struct {
	Received     uint64            // datagrams read
	Accepted     uint64            // replies sent with an accepting status
	Rejected     map[Reason]uint64 // replies sent with a rejecting status, by reason
	Malformed    uint64            // datagrams that did not parse (including truncated and oversize)
	AuthFailures uint64            // unknown key id or bad HMAC
	Replays      uint64            // refused by the replay window
	Ignored      uint64            // authenticated replies received (the server answers only requests)
	NoReply      uint64            // requests the Handler chose not to answer
	SendErrors   uint64            // replies that could not be marshalled or sent
}

// RejectedTotal sums Rejected.
func (s ServerStats) RejectedTotal() uint64 {
	var n uint64
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Received: s.received.Load(), Accepted: s.accepted.Load(), Malformed: s.malformed.Load(),
		AuthFailures: s.authFailures.Load(), Replays: s.replays.Load(), Ignored: s.ignored.Load(),
		NoReply: s.noReply.Load(), SendErrors: s.sendErrors.Load(), Rejected: map[Reason]uint64{},
	}
	for i := range s.rejected {
		if v := s.rejected[i].Load(); v != 0 {
			st.Rejected[Reason(i)] = v
		}
	}
	return st
}

func (s *Server) validate() error {
	switch {
	case s.Conn == nil:
		return errors.New("registration server: no socket")
	case s.Keys == nil:
		return errors.New("registration server: no keys")
	case s.KeyID == 0 || len(s.Secret) == 0:
		return errors.New("registration server: no signing key")
	case s.Handler == nil:
		return errors.New("registration server: no handler")
	case s.MaxInFlight < 0:
		return fmt.Errorf("registration server: max in flight %d is negative", s.MaxInFlight)
	}
	return nil
}

// Run serves until ctx is canceled, then waits for the Handler calls under
// way and returns nil. It uses read deadlines on Conn to stop; it does not
// close Conn. Other read errors end it with an error.
func (s *Server) Run(ctx context.Context) error {
	if err := s.validate(); err != nil {
		return err
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	window := s.Window
	if window == nil {
		window = &ReplayWindow{}
	}
	max := s.MaxInFlight
	if max == 0 {
		max = DefaultMaxInFlight
	}
	if err := s.Conn.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("registration socket: %w", err)
	}
	var ceils *ceilings
	if s.SeqStore != nil {
		ceils = &ceilings{store: s.SeqStore}
		if err := ceils.load(ctx, window); err != nil {
			return fmt.Errorf("registration server: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { s.Conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max)
	buf := make([]byte, MaxMessageLen+1) // one more to see oversize datagrams
	for {
		n, from, err := s.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read registration socket: %w", err)
		}
		s.received.Add(1)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		req, ok := s.admit(buf[:n], from, window, log)
		if !ok {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ceils != nil {
				if err := ceils.cover(ctx, req.KeyID, req.Seq); err != nil {
					log.Warn("registration refused", "from", from, "err", err)
					s.send(from, req.Reply(StatusRejected, ReasonInternal), log)
					return
				}
			}
			rep := s.Handler.Handle(ctx, from, req)
			if rep == nil {
				s.noReply.Add(1)
				return
			}
			rep.Type, rep.Seq = TypeReply, req.Seq
			s.send(from, rep, log)
		}()
	}
}

// admit parses, authenticates and replay-checks one datagram. It answers
// and counts what it refuses, and returns the request to handle otherwise.
func (s *Server) admit(b []byte, from netip.AddrPort, window *ReplayWindow, log *slog.Logger) (*Message, bool) {
	req, err := Parse(b, s.Keys)
	if err != nil {
		reason := ReasonMalformed
		if errors.Is(err, ErrAuth) {
			reason = ReasonAuth
			s.authFailures.Add(1)
		} else {
			s.malformed.Add(1)
		}
		log.Debug("registration refused, not answered", "from", from, "reason", reason, "err", err)
		return nil, false
	}
	if req.Type != TypeRequest {
		s.ignored.Add(1)
		log.Debug("registration reply received by the server, dropped", "from", from, "msg", req)
		return nil, false
	}
	if err := window.Check(req.KeyID, req.Seq, req.Timestamp); err != nil {
		s.replays.Add(1)
		log.Debug("registration refused", "from", from, "err", err)
		s.send(from, req.Reply(StatusRejected, ReasonReplay), log)
		return nil, false
	}
	owner, _, _ := s.Keys.Secret(req.KeyID)
	if req.NVE == "" {
		req.NVE = owner
	} else if req.NVE != owner {
		log.Debug("registration refused: nve option does not match the key", "from", from, "nve", req.NVE, "owner", owner)
		s.send(from, req.Reply(StatusRejected, ReasonNotAuthorized), log)
		return nil, false
	}
	return req, true
}

// send signs rep with the server key and sends it.
func (s *Server) send(to netip.AddrPort, rep *Message, log *slog.Logger) {
	rep.Type = TypeReply
	rep.KeyID = s.KeyID
	rep.Timestamp = time.Now()
	s.signOnce.Do(func() { s.sign = &signer{secret: s.Secret} })
	b, err := s.sign.marshal(rep)
	if err != nil {
		log.Error("registration reply not sent", "to", to, "err", err)
		s.sendErrors.Add(1)
		// Answer anyway so that the client does not retry in vain.
		rep = &Message{Type: TypeReply, Seq: rep.Seq, KeyID: s.KeyID, Timestamp: rep.Timestamp, Status: StatusRejected, Reason: ReasonInternal}
		if b, err = s.sign.marshal(rep); err != nil {
			return
		}
	}
	// Count before sending, so that the counters include a reply by the
	// time its receiver sees it; take it back if the send fails.
	counter := &s.accepted
	if !rep.Status.Accepted() {
		counter = &s.rejected[rep.Reason]
	}
	counter.Add(1)
	if _, err := s.Conn.WriteToUDPAddrPort(b, to); err != nil {
		counter.Add(^uint64(0))
		log.Debug("send registration reply", "to", to, "err", err)
		s.sendErrors.Add(1)
	}
}
