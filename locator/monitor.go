package locator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// The datapath monitor (ilactl monitor, like cilium monitor): the
// datapath reports drops with their reason, misses and redirects through
// a ring buffer while someone listens, and the local API streams them:
//
//	GET /v1/monitor   NDJSON, one MonitorEvent per line, until the client goes

// MonitorEvent is one datapath event.
type MonitorEvent struct {
	Time time.Time `json:"time"`
	Node string    `json:"node,omitempty"`
	// Type is "drop", "miss", "redirect", or "lost": Lost events were not
	// reported (the datapath's rate limit, a full ring buffer, or this
	// subscriber reading too slowly) since the previous lost event.
	Type string `json:"type"`
	// Reason is the datapath counter that counted the packet
	// ("drop_spoofed_source", "pass_miss", "inflight_forwarded", ...).
	Reason  string     `json:"reason,omitempty"`
	Ifindex int        `json:"ifindex,omitempty"`
	Iface   string     `json:"iface,omitempty"`
	Len     int        `json:"len,omitempty"`
	Src     netip.Addr `json:"src,omitzero"`
	// Dst is the destination as a SIR address; Locator where a redirect
	// sent it.
	Dst     netip.Addr  `json:"dst,omitzero"`
	Locator ila.Locator `json:"locator,omitzero"`
	Lost    uint64      `json:"lost,omitempty"`
}

// EventSource is the datapath side of the monitor.
type EventSource interface {
	// SetMonitor turns the datapath's reports on or off.
	SetMonitor(on bool) error
	// ReadEvent blocks for the next event until ctx ends.
	ReadEvent(ctx context.Context) (MonitorEvent, error)
	// MonitorLost counts the events the datapath could not report.
	MonitorLost() (uint64, error)
}

// Monitor fans the datapath's events out to the local API's subscribers.
// The datapath reports only while at least one subscriber listens.
type Monitor struct {
	src  EventSource
	node string

	mu     sync.Mutex
	subs   map[*monSub]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

type monSub struct {
	ch      chan MonitorEvent
	dropped uint64 // events this subscriber missed (slow), under Monitor.mu
}

// NewMonitor returns a monitor of src for node.
func NewMonitor(src EventSource, node string) *Monitor {
	return &Monitor{src: src, node: node, subs: map[*monSub]struct{}{}}
}

// Subscribe calls fn for every event until ctx ends (or the datapath
// fails: its error). fn runs on the caller's goroutine.
func (m *Monitor) Subscribe(ctx context.Context, fn func(MonitorEvent)) error {
	s := &monSub{ch: make(chan MonitorEvent, 1024)}
	if err := m.add(s); err != nil {
		return err
	}
	defer m.remove(s)
	return s.loop(ctx, fn)
}

func (s *monSub) loop(ctx context.Context, fn func(MonitorEvent)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-s.ch:
			if !ok {
				return errors.New("datapath monitor stopped")
			}
			fn(ev)
		}
	}
}

func (m *Monitor) add(s *monSub) error {
	m.mu.Lock()
	if m.cancel != nil {
		m.subs[s] = struct{}{}
		m.mu.Unlock()
		return nil
	}
	old := m.done
	m.mu.Unlock()
	if old != nil {
		<-old // the last reader is still winding down
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel == nil { // nobody started one meanwhile
		if err := m.src.SetMonitor(true); err != nil {
			return fmt.Errorf("turn the datapath monitor on: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel, m.done = cancel, make(chan struct{})
		go m.read(ctx, m.done)
	}
	m.subs[s] = struct{}{}
	return nil
}

func (m *Monitor) remove(s *monSub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, s)
	if len(m.subs) == 0 && m.cancel != nil {
		m.stop()
	}
}

// stop ends the reader and turns the datapath's reports off; m.mu is
// held.
func (m *Monitor) stop() {
	m.cancel()
	m.cancel = nil
	_ = m.src.SetMonitor(false) // best effort: a later subscriber turns it on again
}

// read reads the datapath's events and hands them out until ctx ends.
func (m *Monitor) read(ctx context.Context, done chan struct{}) {
	defer close(done)
	lost0, _ := m.src.MonitorLost()
	lastLost := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		ev, err := m.src.ReadEvent(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			ev.Node = m.node
			m.broadcast(ev)
		} else if !errors.Is(err, context.DeadlineExceeded) {
			m.mu.Lock()
			for s := range m.subs {
				close(s.ch)
				delete(m.subs, s)
			}
			if m.cancel != nil {
				m.stop()
			}
			m.mu.Unlock()
			return
		}
		if time.Since(lastLost) >= time.Second {
			lastLost = time.Now()
			if n, err := m.src.MonitorLost(); err == nil && n > lost0 {
				m.broadcast(MonitorEvent{Time: lastLost, Node: m.node, Type: "lost", Lost: n - lost0})
				lost0 = n
			}
		}
	}
}

func (m *Monitor) broadcast(ev MonitorEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.subs {
		if s.dropped > 0 {
			select {
			case s.ch <- MonitorEvent{Time: ev.Time, Node: m.node, Type: "lost", Lost: s.dropped}:
				s.dropped = 0
			default:
				s.dropped++
				continue
			}
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped++
		}
	}
}

// Handler serves GET /v1/monitor and passes everything else to next
// (nil: 404).
func (m *Monitor) Handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	if next != nil {
		mux.Handle("/", next)
	}
	mux.HandleFunc("GET /v1/monitor", func(w http.ResponseWriter, r *http.Request) {
		s := &monSub{ch: make(chan MonitorEvent, 1024)}
		if err := m.add(s); err != nil {
			writeErr(w, http.StatusServiceUnavailable, err)
			return
		}
		defer m.remove(s)
		fl, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		if fl != nil {
			fl.Flush() // the client sees the stream open before the first event
		}
		enc := json.NewEncoder(w)
		err := s.loop(r.Context(), func(ev MonitorEvent) {
			if enc.Encode(ev) == nil && fl != nil {
				fl.Flush()
			}
		})
		if err != nil {
			_ = enc.Encode(map[string]string{"error": err.Error()})
		}
	})
	return mux
}

// Monitor streams the node's datapath events (GET /v1/monitor) to fn
// until ctx ends (nil) or the stream breaks. The client's 10 s timeout
// does not apply.
func (c *Client) Monitor(ctx context.Context, fn func(MonitorEvent)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/monitor", nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ilad API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		ours := json.Unmarshal(b, &e) == nil && e.Error != ""
		if !ours {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error, ours: ours}
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev struct {
			MonitorEvent
			Error string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("ilad API: monitor: decode event %.100q: %w", sc.Bytes(), err)
		}
		if ev.Error != "" {
			return fmt.Errorf("ilad API: monitor: %s", ev.Error)
		}
		fn(ev.MonitorEvent)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("ilad API: monitor: %w", err)
	}
	return errors.New("ilad API: monitor: stream closed by ilad")
}
