// Command ilalab builds the whole ILA data center in network namespaces on
// one machine: a fabric (underlay + ILA router), NVEs running ilad, tasks,
// and a control namespace running mapsrv (embedded etcd) and dnsbridge.
//
//	ilalab up [--nves N] [--tasks-per-nve M] [--ipv4-tenant] [--routers N] [--etcd-members 3] [--mapsrv-replicas 2] [--state-dir DIR]
//	ilalab status [-o json]
//	ilalab move TASK --to NVE [--mode hot|warm|cold]
//	ilalab standby TASK --on NVE
//	ilalab fail|recover NVE|mapsrv|router|routerN
//	ilalab demo [--scenario failover [--cycles N]]
//	ilalab chaos SCENARIO|--all [--move] [--runs N]   (docs/RELIABILITY.md)
//	ilalab down [--all]
//
// It needs root. See deploy/lab for the addressing plan.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ilalab:", err)
		os.Exit(1)
	}
}
