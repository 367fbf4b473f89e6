//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if _, err := parseConfig(args, stderr); err != nil {
		return err
	}
	return errors.ErrUnsupported
}
