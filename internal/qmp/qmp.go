package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	dqmp "github.com/digitalocean/go-qemu/qmp"
)

// Event is one asynchronous QMP event.
type Event struct {
	Name string
	Data map[string]any
	// Time is QEMU's own timestamp of the event.
	Time time.Time
}

// ErrClosed is returned by commands on a closed monitor (or one whose QEMU
// went away).
var ErrClosed = errors.New("qmp: monitor closed")

// Monitor is a connected QMP session.
type Monitor struct {
	mon *dqmp.SocketMonitor

	mu      sync.Mutex
	onEvent func(Event)
	closed  bool
	done    chan struct{} // closed when the event stream ends
}

// Dial connects to the QMP socket at path and negotiates capabilities,
// retrying until ctx ends while the socket does not exist yet or refuses
// (QEMU is still starting). onEvent, if not nil, receives every event in
// order, from one goroutine; it must not block for long.
func Dial(ctx context.Context, path string, onEvent func(Event)) (*Monitor, error) {
	for {
		m, err := dial(path, onEvent)
		if err == nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w", path, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dial(path string, onEvent func(Event)) (*Monitor, error) {
	sm, err := dqmp.NewSocketMonitor("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	if err := sm.Connect(); err != nil {
		_ = sm.Disconnect()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	// Always listen: the library blocks its reader on an unread event.
	evs, err := sm.Events(context.Background())
	if err != nil {
		_ = sm.Disconnect()
		return nil, fmt.Errorf("events: %w", err)
	}
	m := &Monitor{mon: sm, onEvent: onEvent, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for e := range evs {
			if onEvent != nil {
				onEvent(Event{Name: e.Event, Data: e.Data, Time: time.Unix(e.Timestamp.Seconds, e.Timestamp.Microseconds*1000)})
			}
		}
	}()
	return m, nil
}

// Done is closed when the connection ends (QEMU quit, or Close).
func (m *Monitor) Done() <-chan struct{} { return m.done }

// Run executes the command with arguments args (nil for none) and decodes
// its "return" value into out (nil to ignore it). If ctx ends first the
// monitor is closed, since QMP cannot cancel a command.
func (m *Monitor) Run(ctx context.Context, command string, args any, out any) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return fmt.Errorf("qmp %s: %w", command, ErrClosed)
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	b = append(b, '\n') // one command per line, as QMP clients send them
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := m.mon.Run(b)
		ch <- result{b, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		m.Close()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	case <-m.done:
		select {
		case r = <-ch:
		case <-time.After(100 * time.Millisecond):
			return fmt.Errorf("qmp %s: %w", command, ErrClosed)
		}
	}
	if r.err != nil {
		return fmt.Errorf("qmp %s: %w", command, r.err)
	}
	if out == nil {
		return nil
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(r.b, &resp); err != nil {
		return fmt.Errorf("qmp %s: decode answer: %w", command, err)
	}
	if err := json.Unmarshal(resp.Return, out); err != nil {
		return fmt.Errorf("qmp %s: decode answer: %w", command, err)
	}
	return nil
}

// Status is the answer of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// Status queries the VM's run state.
func (m *Monitor) Status(ctx context.Context) (Status, error) {
	var s Status
	err := m.Run(ctx, "query-status", nil, &s)
	return s, err
}

// AnnounceSelf asks QEMU to announce the guest's NICs again (RARP frames
// from each MAC), as it does by itself after an incoming migration.
func (m *Monitor) AnnounceSelf(ctx context.Context) error {
	return m.Run(ctx, "announce-self", map[string]any{"initial": 50, "max": 550, "rounds": 3, "step": 100}, nil)
}

// Close ends the session (QEMU keeps running).
func (m *Monitor) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	_ = m.mon.Disconnect()
}
