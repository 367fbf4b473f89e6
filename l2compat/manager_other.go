//go:build !linux

package l2compat

import (
	"context"
	"errors"

	"github.com/ilamesh/ilamesh/ila"
)

// Manager is only implemented on Linux.
type Manager struct{}

// New returns errors.ErrUnsupported outside Linux.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, errors.ErrUnsupported
}

func (m *Manager) Apply(ila.Event) error        { return errors.ErrUnsupported }
func (m *Manager) AddPort(string, uint32) error { return errors.ErrUnsupported }
func (m *Manager) RemovePort(string) error      { return errors.ErrUnsupported }
func (m *Manager) Run(context.Context) error    { return errors.ErrUnsupported }
func (m *Manager) Close() error                 { return nil }
func (m *Manager) Stats() Stats                 { return Stats{} }
