//go:build linux

package lab

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Capture counts the frames received on a task's eth0 (Ethernet frames,
// as seen by an ETH_P_ALL tap) that match.
type Capture struct {
	// outgoing: count frames sent on the interface too.
	outgoing bool
	fd       int
	match    func(frame []byte) bool
	mu       sync.Mutex
	n        int
	stop     chan struct{}
	done     chan struct{}
	first    []byte
}

// StartCapture starts counting frames arriving at task's eth0.
func (l *Lab) StartCapture(taskName string, match func(frame []byte) bool) (*Capture, error) {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return nil, err
	}
	tn, err := l.node(task.Netns)
	if err != nil {
		return nil, err
	}
	return l.capture(tn, task.taskIf(), taskName, match, false)
}

// StartUplinkCapture counts the frames that nve sends or receives on its
// fabric link (up0) and that match.
func (l *Lab) StartUplinkCapture(nveName string, match func(frame []byte) bool) (*Capture, error) {
	nve, err := l.topo.NVEByName(nveName)
	if err != nil {
		return nil, err
	}
	nn, err := l.node(nve.Netns)
	if err != nil {
		return nil, err
	}
	return l.capture(nn, "up0", nveName, match, true)
}

func (l *Lab) capture(tn *node, ifname, who string, match func(frame []byte) bool, outgoing bool) (*Capture, error) {
	eth, err := tn.link(ifname)
	if err != nil {
		return nil, err
	}
	c := &Capture{outgoing: outgoing, match: match, stop: make(chan struct{}), done: make(chan struct{})}
	proto := htons(unix.ETH_P_ALL)
	if err := tn.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: eth.Attrs().Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	}); err != nil {
		return nil, fmt.Errorf("capture on %s %s: %w", who, ifname, err)
	}
	go c.run()
	return c, nil
}

func (c *Capture) run() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, 2048)
	flags := 0
	for {
		select {
		case <-c.stop:
			// Count what already arrived before returning: on a loaded
			// machine this goroutine may not have run for a while, and the
			// frames wait in the socket's queue.
			flags = unix.MSG_DONTWAIT
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if flags == 0 && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && !c.outgoing {
			continue
		}
		if c.match(buf[:n]) {
			c.mu.Lock()
			c.n++
			if c.first == nil {
				c.first = append([]byte(nil), buf[:n]...)
			}
			c.mu.Unlock()
		}
	}
}

// Stop ends the capture and returns the number of matching frames and the
// first of them.
func (c *Capture) Stop() (int, []byte) {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.first
}
