//go:build linux

package locator

import (
	"context"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var _ FrameWatcher = (*NetlinkPorts)(nil)

// WatchFrames implements FrameWatcher with a packet socket on the port in
// the ports' namespace; arrival times are the kernel's receive timestamps.
func (p *NetlinkPorts) WatchFrames(ctx context.Context, port Port, match func([]byte) bool) (<-chan time.Time, error) {
	var fd int
	err := p.do(func() error {
		var err error
		// Protocol 0: nothing arrives before the bind to the port.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: port.Ifindex})
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("watch port %s: packet socket: %w", port.Name, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	// Wake up now and then to notice ctx ending.
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch port %s: %w", port.Name, err)
	}
	ch := make(chan time.Time, 1)
	go func() {
		defer unix.Close(fd)
		defer close(ch)
		buf := make([]byte, 256) // headers are enough to match
		oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
		for ctx.Err() == nil {
			n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_TRUNC)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if !match(buf[:min(n, len(buf))]) {
				continue
			}
			at := time.Now()
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
						ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
						at = time.Unix(ts.Sec, ts.Nsec)
					}
				}
			}
			ch <- at
			return
		}
	}()
	return ch, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
