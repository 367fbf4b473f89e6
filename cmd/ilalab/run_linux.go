//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

const usage = `usage: ilalab COMMAND [flags]

commands:
  up       build the lab and start its daemons; prints the topology as JSON
  status   show the lab (-o json for the topology)
  move     move a task to another NVE: ilalab move TASK --to NVE [--mode hot|warm|cold]
  standby  give a task a hot standby on another NVE: ilalab standby TASK --on NVE
  fail     make an NVE die (ilad killed, link down), mapsrv (killed) or an ILA router: ilalab fail NVE|mapsrv|router|routerN
  recover  bring back what fail took down: ilalab recover NVE|mapsrv|router|routerN
  chaos    faults under traffic, with counts and a consistency check: ilalab chaos SCENARIO|--all [--move]
  demo     up, traffic, a hot move under traffic (or --scenario failover), report, down
  down     remove everything the lab made (idempotent); --all: what dead runs left

Run "ilalab COMMAND -h" for the flags of a command. Needs root.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "up":
		return cmdUp(ctx, args, stdout, stderr)
	case "down":
		return cmdDown(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "move":
		return cmdMove(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "standby", "fail", "recover":
		return cmdFailover(ctx, cmd, args, stdout, stderr)
	case "chaos":
		return cmdChaos(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, veths, eBPF): run with sudo")
	}
	return nil
}

type common struct {
	stateDir string
	name     string
	quiet    bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.stateDir, "state-dir", lab.DefaultDir, "state directory (topology.json, pids, logs, etcd data)")
	fs.StringVar(&c.name, "name", "", "namespace name prefix (default "+lab.DefaultName+", or the one recorded in the state dir)")
	fs.BoolVar(&c.quiet, "q", false, "no progress line")
}

// progress returns a func printing a progress line on w (a terminal line
// rewritten in place when w is a terminal, one line per step otherwise).
func progress(w io.Writer, quiet bool) func(string) {
	if quiet {
		return func(string) {}
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return func(s string) {
		if tty {
			fmt.Fprintf(w, "\r\033[K» %s", s)
			return
		}
		fmt.Fprintf(w, "» %s\n", s)
	}
}

func endProgress(w io.Writer) {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(w, "\r\033[K")
		}
	}
}

func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ilalab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func upConfig(fs *flag.FlagSet, c *common) *lab.Config {
	cfg := &lab.Config{}
	c.register(fs)
	fs.IntVar(&cfg.NVEs, "nves", 3, "number of NVEs")
	fs.IntVar(&cfg.TasksPerNVE, "tasks-per-nve", 1, "IPv6 tasks per NVE")
	fs.IntVar(&cfg.Tenants, "tenants", 1, "spread the IPv6 tasks over this many tenants (tenant1..N, round robin); tenants are isolated unless 'ilactl policy allow' lets two talk")
	fs.BoolVar(&cfg.IPv4Tenant, "ipv4-tenant", false, "add one IPv4 tenant task per NVE (VXLAN/ARP path)")
	fs.IntVar(&cfg.VMTasks, "vm-tasks", 0, "add VM tasks: QEMU guests (TCG) on a tap in their NVE's namespace, from the last NVE backwards (needs qemu-system-x86, busybox-static and apt access to the linux-image-amd64 package)")
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "directory holding mapsrv, ilad, dnsbridge, ilactl (default: beside ilalab, then $PATH)")
	fs.IntVar(&cfg.DCs, "dcs", 1, "data centres: each a fabric (FRR) with its NVEs and ILA router, joined by an interconnect with eBGP (needs --fabric frr)")
	fs.DurationVar(&cfg.BGPRestart, "bgp-restart", 0, "graceful restart time the NVEs offer the FRR fabric (default 120s): a crashed ilad keeps its locator routed this long")
	fs.IntVar(&cfg.Routers, "routers", 0, "ILA routers in namespaces of their own, each announcing the SIR prefix to the fabric's FRR over BGP (anycast, ECMP; needs --fabric frr, one DC); 0: one router inside the fabric namespace")
	fs.StringVar(&cfg.Fabric, "fabric", "", "how the fabric routes the locators: frr (FRR learns them from the NVEs over BGP) or static (default: frr where FRR is installed)")
	fs.DurationVar(&cfg.Lifetime, "lifetime", 0, "registration lifetime the NVEs ask for (default ilad's, 2m; at least 4s)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 100*time.Millisecond, "NVE heartbeat interval (mapsrv declares an NVE dead after 3)")
	fs.IntVar(&cfg.EtcdMembers, "etcd-members", 1, "etcd members: 1 is mapsrv's embedded etcd; 3 or 5 run an etcd cluster (the etcd binary: apt install etcd-server) in the control namespace")
	fs.IntVar(&cfg.MapsrvReplicas, "mapsrv-replicas", 1, "mapsrv replicas (1-3), each with its own API and registration port; the NVEs get every address. More than one runs an etcd cluster (--etcd-members 3 unless given; 1 is refused)")
	fs.IntVar(&cfg.FlapMoves, "flap-moves", 0, "moves of one task mapsrv allows within 3 minutes before it damps them (default mapsrv's, 5; `ilalab chaos moves` needs many)")
	fs.BoolVar(&cfg.UnderlayOnly, "underlay-only", false, "only namespaces, links and plain routes, no ILA daemons")
	fs.BoolVar(&cfg.HostLink, "host-link", true, "join the host to the control namespace (fd00:ff:c1::1, route to fd00:ff:c0::/64) so ilactl and dig reach mapsrv and dnsbridge from the host")
	return cfg
}

func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("up", stderr)
	var c common
	cfg := upConfig(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("up: unexpected argument %q", fs.Arg(0))
	}
	etcdGiven := false
	fs.Visit(func(f *flag.Flag) { etcdGiven = etcdGiven || f.Name == "etcd-members" })
	if cfg.MapsrvReplicas > 1 && !etcdGiven {
		cfg.EtcdMembers = 0 // replicas share an etcd cluster: 3 members (lab.Config)
	}
	if err := needRoot(); err != nil {
		return err
	}
	cfg.StateDir, cfg.Name, cfg.Progress = c.stateDir, c.name, progress(stderr, c.quiet)
	l, err := lab.Up(ctx, *cfg)
	endProgress(stderr)
	if err != nil {
		if l != nil {
			fmt.Fprintf(stderr, "ilalab: up did not finish; logs in %s/logs; removing what was built\n", cfg.StateDir)
			l.Close()
			if derr := lab.Down(cfg.StateDir, cfg.Name, nil); derr != nil {
				fmt.Fprintln(stderr, "ilalab: down:", derr)
			}
		}
		return err
	}
	defer l.Close()
	return printJSON(stdout, l.Topology())
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdDown(args []string, stdout, stderr io.Writer) error {
	fs := flags("down", stderr)
	var c common
	c.register(fs)
	all := fs.Bool("all", false, "instead of one lab, remove what dead runs left (see internal/owner): labs whose builder has exited and whose daemons are gone, namespaces and bpffs mounts of test processes that died; keeps what a live process made, and prints both")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *all {
		return downAll(fs, stdout)
	}
	if err := needRoot(); err != nil {
		return err
	}
	err := lab.Down(c.stateDir, c.name, progress(stderr, c.quiet))
	endProgress(stderr)
	return err
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs := flags("status", stderr)
	var c common
	c.register(fs)
	out := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lab.Load(c.stateDir, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	st := l.Status()
	switch *out {
	case "json":
		return printJSON(stdout, st)
	case "table":
	default:
		return fmt.Errorf("status: output %q: want table or json", *out)
	}
	t := st.Topology
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "lab %s (state %s), domain %s %s\n", t.Name, t.StateDir, t.Domain.Name, t.Domain.SIR)
	fmt.Fprintln(tw, "\nNVE\tNETNS\tLOCATOR\tUNDERLAY\tILAD")
	for _, n := range t.NVEs {
		fmt.Fprintf(tw, "%s\t%s\t%s::/64\t%s\t%s\n", n.Name, n.Netns, n.Locator, n.Underlay, st.Procs["ilad-"+n.Name])
	}
	fmt.Fprintln(tw, "\nTASK\tTENANT\tNVE\tSIR\tIPV4\tNETNS")
	for _, k := range t.Tasks {
		v4 := "-"
		if k.IPv4.IsValid() {
			v4 = k.IPv4.String()
		}
		where := k.Netns
		if k.VM != nil {
			where = fmt.Sprintf("VM: qemu pid %d, tap %s in %s's namespace", k.VM.PID, k.Ifname, k.NVE)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Tenant, k.NVE, k.SIR, v4, where)
	}
	fmt.Fprintln(tw, "\nSERVICE\tNETNS\tADDRESS\tSTATE")
	fmt.Fprintf(tw, "mapsrv api\t%s\t%s\t%s\n", t.Mapsrv.Netns, t.Mapsrv.API, st.Procs["mapsrv"])
	fmt.Fprintf(tw, "mapsrv registration\t%s\t%s\t\n", t.Mapsrv.Netns, t.Mapsrv.Registration)
	fmt.Fprintf(tw, "etcd\t%s\t%s\t\n", t.Mapsrv.Netns, strings.Join(t.Etcd.Endpoints, ","))
	fmt.Fprintf(tw, "dns (%s)\t%s\t%s\t%s\n", t.DNS.Zone, t.DNS.Netns, t.DNS.Addr, st.Procs["dnsbridge"])
	if len(t.Routers) == 0 {
		fmt.Fprintf(tw, "ila router\t%s\t%s\t%s\n", t.Router.Netns, t.Router.Mode, st.Procs["router"])
	}
	for _, r := range t.Routers {
		fmt.Fprintf(tw, "ila %s (anycast %s)\t%s\t%s\t%s\n", r.Name, t.Domain.SIR, r.Netns, r.Addr, st.Procs[r.Name])
	}
	if len(t.Missing) > 0 {
		fmt.Fprintf(tw, "\nmissing components: %s\n", strings.Join(t.Missing, ", "))
	}
	return tw.Flush()
}

func cmdMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("move", stderr)
	var c common
	c.register(fs)
	to := fs.String("to", "", "destination NVE (e.g. nve2)")
	mode := fs.String("mode", "hot", "hot, warm or cold")
	via := fs.String("via", lab.ViaAuto, "hot move: auto (dual in an ILA lab, carry with -underlay-only), carry (the NVE end of the veth moves; loses packets in flight while the device is between namespaces) or dual (make-before-break with a second veth: lossless)")
	out := fs.String("o", "text", "output: text or json")
	// Allow the task name before or after the flags.
	var task string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		task, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if task == "" && fs.NArg() > 0 {
		task = fs.Arg(0)
	}
	if task == "" || *to == "" {
		return errors.New("move: usage: ilalab move TASK --to NVE [--mode hot|warm|cold]")
	}
	if err := needRoot(); err != nil {
		return err
	}
	l, err := lab.Load(c.stateDir, progress(stderr, c.quiet))
	if err != nil {
		return err
	}
	defer l.Close()
	r, err := l.MoveVia(ctx, task, *to, *mode, *via)
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "moved %s from %s to %s (%s): link moved after %v, committed after %v\n",
		r.Task, r.From, r.To, r.Mode, r.LinkMoved.Sub(r.Start).Round(10e3), r.Committed.Sub(r.Start).Round(10e3))
	return nil
}
