package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/where"
	"github.com/spf13/cobra"
)

// defaultSocketPattern is where ilad puts its local API by default.
var defaultSocketPattern = locator.DefaultAPISocket("{nve}")

func newWhereCmd(g *globals) *cobra.Command {
	var (
		all            bool
		pattern        string
		addrs, routers []string
		wait           time.Duration
		secure         iladSecurity
	)
	cmd := &cobra.Command{
		Use:   "where TASK | --all",
		Short: "Show the locator every NVE's and ILA router's datapath holds for a task, and whether it matches the store",
		Long: `where asks every NVE of the store (and the ILA routers given with --router)
for what its datapath holds for the task, read back from its eBPF tables
through ilad's local API, and the store revision it has applied, and
compares with mapsrv's store. TASK is TENANT/NAME, NAME or the task's SIR
address; --all checks every task, and entries the store does not have.

Status per node: ok; behind (it differs, and the node has not applied the
task's last change yet); wrong (it differs although it has); not-synced
(its watch is listing the store again); unreachable. The exit status is
non-zero unless every node is ok or behind (--wait: until every node is ok).

Each NVE's local API is found at --ilad-addr NVE=ADDR if given, else at
the URL it advertises (ilad -api-advertise, from mapsrv's NVE status),
else at --ilad-socket (a pattern in which {nve} is the NVE's name: a
socket path or HOST:PORT; given explicitly, it wins over the advertised
URLs). A TCP local API wants --ilad-token-file (a read-only token will
do) and, over https, --ilad-ca-file.
In the lab: --ilad-socket /run/ilalab/ilad-{nve}.sock --router router=/run/ilalab/ilad-router.sock`,
		Example: `  ilactl where t1/web
  ilactl where --all -o json
  ilactl where --all --wait 5s --ilad-socket '/run/ilalab/ilad-{nve}.sock'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all != (len(args) == 0) || len(args) > 1 {
				return errors.New("give one TASK or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var q where.Query
			if !all {
				var err error
				if q, err = parseWhereTask(args[0]); err != nil {
					return err
				}
			}
			byName, err := pairs("--ilad-addr", addrs)
			if err != nil {
				return err
			}
			var rs []where.Node
			rmap, err := pairs("--router", routers)
			if err != nil {
				return err
			}
			for name, a := range rmap {
				c, err := secure.dial(a)
				rs = append(rs, where.Node{Name: name, Agent: c, Err: err})
			}
			if !strings.Contains(pattern, "{nve}") {
				return fmt.Errorf("--ilad-socket %q: want a pattern holding {nve}", pattern)
			}
			api, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// The addresses the NVEs advertise (ilad -api-advertise, in
			// their heartbeats), unless a socket pattern was given.
			advertised := map[string]string{}
			if !cmd.Flags().Changed("ilad-socket") && os.Getenv("ILAD_SOCKET_PATTERN") == "" {
				st, err := api.NVEStatuses(ctx)
				if err != nil && !errors.Is(err, mapsrv.ErrNotFound) { // an older mapsrv has none
					return err
				}
				for _, s := range st {
					if s.API != "" {
						advertised[s.NVE] = s.API
					}
				}
			}
			reach := func(n ila.NVE) (where.Agent, error) {
				a, ok := byName[n.Name]
				if !ok {
					a, ok = advertised[n.Name]
				}
				if !ok {
					a = strings.ReplaceAll(pattern, "{nve}", n.Name)
				}
				return secure.dial(a)
			}
			nodes := where.NVEs(reach, rs...)
			var rep *where.Report
			if wait > 0 {
				wctx, cancel := context.WithTimeout(ctx, wait)
				rep, err = where.Converge(wctx, api, nodes, q, 200*time.Millisecond)
				cancel()
				if rep == nil {
					return err
				}
			} else if rep, err = where.Check(ctx, api, nodes, q); err != nil {
				return err
			}
			if err := printWhere(g, rep); err != nil {
				return err
			}
			if !all && len(rep.Tasks) == 0 {
				return fmt.Errorf("task %s: not in the store, and no datapath holds it", args[0])
			}
			if p := rep.Problems(); len(p) > 0 {
				return fmt.Errorf("inconsistent: %d problem(s):\n  %s", len(p), strings.Join(p, "\n  "))
			}
			if wait > 0 && !rep.Settled() {
				return fmt.Errorf("not every datapath applied the store's changes within %s", wait)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every task of the store (and entries the store does not have)")
	def := os.Getenv("ILAD_SOCKET_PATTERN")
	if def == "" {
		def = defaultSocketPattern
	}
	cmd.Flags().StringVar(&pattern, "ilad-socket", def, "where each NVE's ilad local API is: {nve} is replaced by the NVE's name (default $ILAD_SOCKET_PATTERN)")
	cmd.Flags().StringArrayVar(&addrs, "ilad-addr", nil, "NVE=ADDR: that NVE's ilad local API (socket path or HOST:PORT); repeatable")
	cmd.Flags().StringArrayVar(&routers, "router", nil, "NAME=ADDR: an ILA router's ilad local API (ilad --role router --api); repeatable")
	cmd.Flags().DurationVar(&wait, "wait", 0, "check again until every datapath equals the store, for at most this long")
	secure.add(cmd)
	return cmd
}

// parseWhereTask reads TENANT/NAME, NAME or a SIR address.
func parseWhereTask(s string) (where.Query, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return where.Query{}, fmt.Errorf("task %q: a SIR address is IPv6", s)
		}
		return where.Query{SIR: a}, nil
	}
	tenant, name, ok := strings.Cut(s, "/")
	if !ok {
		name, tenant = tenant, ""
	}
	if name == "" || (ok && tenant == "") || strings.Contains(name, "/") {
		return where.Query{}, fmt.Errorf("task %q: want TENANT/NAME, NAME or a SIR address", s)
	}
	return where.Query{Tenant: tenant, Name: name}, nil
}

// pairs reads NAME=VALUE flags.
func pairs(flag string, vs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vs {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			return nil, fmt.Errorf("%s %q: want NAME=ADDR", flag, v)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: %s given twice", flag, k)
		}
		out[k] = val
	}
	return out, nil
}

func printWhere(g *globals, r *where.Report) error {
	if g.json() {
		return g.printJSON(r)
	}
	var rows [][]string
	for _, t := range r.Tasks {
		task := t.Name
		if t.Tenant != "" {
			task = t.Tenant + "/" + t.Name
		}
		store := "-"
		switch {
		case t.Missing:
			task, store = "(not in store)", "none"
		case t.State == ila.StateSuspended:
			store = "suspended"
		case t.Locator != 0:
			store = t.Locator.String() + " (" + t.NVE + ")"
		}
		for _, h := range t.Nodes {
			held := "-"
			if h.Locator != 0 {
				held = h.Locator.String()
			}
			var notes []string
			if h.Local {
				notes = append(notes, "local")
			}
			if h.Suspended {
				notes = append(notes, "suspended")
			}
			if h.InFlight != 0 {
				notes = append(notes, "in-flight to "+h.InFlight.String())
			}
			rev := "-"
			if t.Revision != 0 {
				rev = fmt.Sprint(t.Revision)
			}
			rows = append(rows, []string{task, t.SIR.String(), h.Node, held, store, rev, fmt.Sprint(h.Applied), string(h.Status), strings.Join(notes, ",")})
		}
	}
	if err := g.printTable([]string{"TASK", "SIR", "NODE", "DATAPATH", "STORE", "TASK-REV", "APPLIED", "STATUS", "NOTES"}, rows); err != nil {
		return err
	}
	var lag []string
	for _, n := range r.Nodes {
		switch {
		case n.Error != "":
			lag = append(lag, n.Name+" unreachable")
		case !n.Synced:
			lag = append(lag, fmt.Sprintf("%s not synced (applied %d)", n.Name, n.Applied))
		}
	}
	verdict := "consistent"
	if !r.Consistent {
		verdict = "INCONSISTENT"
	} else if !r.Settled() {
		verdict = "consistent, some nodes still applying"
	}
	fmt.Fprintf(g.stdout, "store revision %d, %d node(s): %s", r.Revision, len(r.Nodes), verdict)
	if len(lag) > 0 {
		fmt.Fprintf(g.stdout, " (%s)", strings.Join(lag, "; "))
	}
	fmt.Fprintln(g.stdout)
	return nil
}

// iladSecurity is how to reach a local API on TCP (ilad -api HOST:PORT
// with -api-token-file and -api-cert).
type iladSecurity struct {
	tokenFile, caFile string
}

func (s *iladSecurity) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.tokenFile, "ilad-token-file", os.Getenv("ILAD_TOKEN_FILE"), "file holding ilad's local API bearer token (its first token; default $ILAD_TOKEN_FILE), for a HOST:PORT API")
	cmd.Flags().StringVar(&s.caFile, "ilad-ca-file", os.Getenv("ILAD_CA_FILE"), "verify an https local API against the CA certificates in this PEM file (default $ILAD_CA_FILE)")
}

// dial returns a client of the local API at addr (socket path, HOST:PORT
// or URL).
func (s *iladSecurity) dial(addr string) (*locator.Client, error) {
	var o locator.ClientOptions
	if s.tokenFile != "" {
		toks, err := mapsrv.ReadTokenFile(s.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--ilad-token-file: %w", err)
		}
		o.Token = toks[0]
	}
	if s.caFile != "" {
		tc, err := apiclient.TLSConfig(s.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ilad-ca-file: %w", err)
		}
		o.TLS = tc
	}
	return locator.NewClientWith(addr, o)
}

// newNVEStatusCmd is "ilactl nve status": what the NVEs last reported
// about their datapaths (mapsrv's NVE status keys).
func newNVEStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the store revision each NVE's datapath has applied, as its heartbeats said, and its advertised local API",
		Long: `status lists what the NVEs last reported in their heartbeats: the store
(etcd) revision their datapath has applied, when, to which mapsrv replica,
and the URL of their local API (ilad -api-advertise). ilactl where compares
each datapath with the store itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			st, err := api.NVEStatuses(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(st)
			}
			var rows [][]string
			for _, s := range st {
				apiURL := s.API
				if apiURL == "" {
					apiURL = "-"
				}
				rows = append(rows, []string{s.NVE, fmt.Sprint(s.Applied), s.Reported.Format(time.RFC3339Nano), s.Replica, apiURL})
			}
			return g.printTable([]string{"NVE", "APPLIED", "REPORTED", "REPLICA", "API"}, rows)
		},
	}
}
