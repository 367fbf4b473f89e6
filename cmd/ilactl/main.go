// Command ilactl is the operator CLI of the ILA mobility router: address
// tools, domains, NVEs, tasks, moves and the live event stream.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ilactl: %v\n", err)
		os.Exit(1)
	}
}

// run executes one ilactl command line. Output goes to stdout; errors are
// returned, not printed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
