// Command ilad is the ILA node agent of one NVE (host): it loads the eBPF
// datapath, keeps its mapping table equal to the mapping service's store
// (etcd watch), attaches and registers the NVE's tasks, forwards packets in
// flight after a task moves away, answers cache misses, emulates neighbour
// discovery on task ports and serves a local API for ilactl attach/detach.
//
// With -role router (or "role": "router" in its config) it is an ILA
// router (ILA-R) instead: the datapath in router mode on -ports, holding
// the whole table from the same watch, translating traffic sent to SIR
// addresses by hosts without the mapping and answering unknown or
// suspended identifiers with ICMPv6 destination unreachable; metrics on
// -metrics, no tasks, no registration, no local API.
//
// It stays in the host mount namespace (so /sys/fs/bpf is visible) and
// switches only the network namespace, on locked OS threads, when given
// -netns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills
	}()
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ilad: %v\n", err)
		os.Exit(1)
	}
}

func newLogger(cfg *config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("node", cfg.Node), nil
}
