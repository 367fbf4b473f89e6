package ndemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// AddPort starts serving the task-facing interface ifname. It looks the
// interface up and opens its socket in Config.NetNS (see there), on a
// throwaway thread: the caller's thread never changes namespace. If Run is
// running the port is served at once (starting with a Router
// Advertisement), otherwise from when Run starts. Adding a port twice is an
// error; so is adding one after Run returned.
func (e *Emulator) AddPort(ctx context.Context, ifname string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add port %s: %w", ifname, err)
	}
	if ifname == "" || len(ifname) > 15 {
		return fmt.Errorf("add port %q: invalid interface name", ifname)
	}
	e.mu.Lock()
	_, dup := e.ports[ifname]
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return fmt.Errorf("add port %s: %w", ifname, ErrClosed)
	}
	if dup {
		return fmt.Errorf("add port %s: already served", ifname)
	}
	c, ifindex, err := openPort(e.cfg.NetNS, ifname)
	if err != nil {
		return fmt.Errorf("add port %s: %w", ifname, err)
	}
	p := &port{name: ifname, ifindex: ifindex, conn: c, kick: make(chan struct{}, 1)}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.ports[ifname] != nil {
		c.close()
		if e.closed {
			return fmt.Errorf("add port %s: %w", ifname, ErrClosed)
		}
		return fmt.Errorf("add port %s: already served", ifname)
	}
	e.ports[ifname] = p
	if e.runCtx != nil {
		e.startPort(e.runCtx, p)
	}
	return nil
}

// RemovePort stops serving ifname and closes its socket. No goodbye
// advertisement is sent: tasks keep their routes (the port is usually
// being torn down, or the agent is restarting).
func (e *Emulator) RemovePort(ifname string) error {
	e.mu.Lock()
	p, ok := e.ports[ifname]
	delete(e.ports, ifname)
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("remove port %s: not served", ifname)
	}
	p.stop()
	return nil
}

// livePorts returns the running ports; e.mu is held.
func (e *Emulator) livePorts() []*port {
	out := make([]*port, 0, len(e.ports))
	for _, p := range e.ports {
		out = append(out, p)
	}
	return out
}

// startPort starts p's goroutines; e.mu is held.
func (e *Emulator) startPort(ctx context.Context, p *port) {
	pctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.wg.Add(2)
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		defer p.wg.Done()
		e.readLoop(pctx, p)
	}()
	go func() {
		defer e.wg.Done()
		defer p.wg.Done()
		e.raLoop(pctx, p)
	}()
	p.kickRA()
}

// port is one served interface.
type port struct {
	name    string
	ifindex int
	conn    *packetConn

	kick   chan struct{} // asks raLoop for an RA now
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func (p *port) kickRA() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop cancels the port's goroutines, closes its socket and waits.
func (p *port) stop() {
	p.once.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		p.conn.close()
		p.wg.Wait()
	})
}

func (e *Emulator) readLoop(ctx context.Context, p *port) {
	buf := make([]byte, 1<<16)
	for {
		n, err := p.conn.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if isTransient(err) {
				// Port went down (or the queue overflowed): the socket
				// rebinds itself when the port comes back up.
				e.log.Debug("ndemu: read", "iface", p.name, "err", err)
				continue
			}
			e.log.Warn("ndemu: read, stop serving port", "iface", p.name, "err", err)
			return
		}
		e.handle(ctx, p, buf[:n])
	}
}
