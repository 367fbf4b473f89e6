//go:build !linux

package netns

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// NS is a named network namespace (Linux only).
type NS struct{}

// New is not supported outside Linux.
func New(string) (*NS, error) { return nil, errors.ErrUnsupported }

// Open is not supported outside Linux.
func Open(string) (*NS, error) { return nil, errors.ErrUnsupported }

// Remove is not supported outside Linux.
func Remove(string) error { return errors.ErrUnsupported }

// List is not supported outside Linux.
func List() ([]string, error) { return nil, errors.ErrUnsupported }

// Unique returns prefix unchanged outside Linux.
func Unique(prefix string) string { return prefix }

func DoPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return errors.ErrUnsupported
}

func (*NS) Name() string                     { return "" }
func (*NS) Path() string                     { return "" }
func (*NS) Fd() int                          { return -1 }
func (*NS) Handle() (*netlink.Handle, error) { return nil, errors.ErrUnsupported }
func (*NS) Do(func() error) error            { return errors.ErrUnsupported }
func (*NS) Close() error                     { return nil }
func (*NS) Delete() error                    { return nil }
