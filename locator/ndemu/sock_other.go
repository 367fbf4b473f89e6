//go:build !linux

package ndemu

import (
	"errors"
	"fmt"
)

type packetConn struct{}

func openPort(nsPath, ifname string) (*packetConn, int, error) {
	return nil, 0, fmt.Errorf("packet socket: %w", errors.ErrUnsupported)
}

func (c *packetConn) read(b []byte) (int, error) { return 0, errors.ErrUnsupported }
func (c *packetConn) write(frame []byte) error   { return errors.ErrUnsupported }
func (c *packetConn) close()                     {}
func isTransient(err error) bool                 { return false }
