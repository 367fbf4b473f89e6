//go:build !linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// run: the lab is network namespaces, veths and eBPF, which only Linux has.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return fmt.Errorf("the lab needs Linux (network namespaces, eBPF), not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
