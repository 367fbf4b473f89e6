//go:build linux

package lab

import (
	"context"
	"fmt"
)

// startControl starts mapsrv and dnsbridge in the control namespace.
func (l *Lab) startControl(ctx context.Context) error {
	return fmt.Errorf("mapsrv: %w", ErrMissing)
}

// startNVEs starts ilad in every NVE namespace and the fabric router.
func (l *Lab) startNVEs(ctx context.Context) error {
	return fmt.Errorf("ilad: %w", ErrMissing)
}

// attachTasks waits for every task's addresses and registers it.
func (l *Lab) attachTasks(ctx context.Context) error {
	return fmt.Errorf("ilad: %w", ErrMissing)
}

// commitMove tells the mapping service that task now lives on to.
func (l *Lab) commitMove(ctx context.Context, task *Task, from, to *NVE, mode string) error {
	return fmt.Errorf("mapsrv: %w", ErrMissing)
}
