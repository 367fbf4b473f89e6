package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/spf13/cobra"
)

// iladFlags locate ilad's local API.
type iladFlags struct {
	addr, node string
	secure     iladSecurity
}

func (f *iladFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "ilad", os.Getenv("ILAD_API"), "ilad local API: socket path, HOST:PORT or URL (default $ILAD_API, else /run/ilad/<node>.sock)")
	cmd.Flags().StringVar(&f.node, "node", "", "NVE name: use /run/ilad/<node>.sock")
	f.secure.add(cmd)
}

func (f *iladFlags) client() (*locator.Client, error) {
	addr := f.addr
	switch {
	case addr != "" && f.node != "":
		return nil, errors.New("give --ilad or --node, not both")
	case f.node != "":
		addr = locator.DefaultAPISocket(f.node)
	case addr == "":
		socks, _ := filepath.Glob(filepath.Join(locator.APISocketDir, "*.sock"))
		if len(socks) != 1 {
			return nil, fmt.Errorf("which ilad? %d sockets in %s: give --node or --ilad", len(socks), locator.APISocketDir)
		}
		addr = socks[0]
	}
	return f.secure.dial(addr)
}

func newAttachCmd(g *globals) *cobra.Command { return newAttachOrPrepareCmd(g, false) }

// newAttachOrPrepareCmd is attach, or prepare (prepare.go) with its help.
func newAttachOrPrepareCmd(g *globals, prepare bool) *cobra.Command {
	var (
		f                           iladFlags
		spec                        locator.TaskSpec
		sir, mac, ipv4, tenant, ifc string
		vni                         uint32
		standby                     bool
	)
	cmd := &cobra.Command{
		Use:   "attach NAME --iface IF --sir ADDR [--tenant T] [--mac M] [--ipv4 A --vni N]",
		Short: "Attach a task to an NVE through its ilad (local API)",
		Long: `attach tells the ilad of an NVE that a task is attached to it through the
interface IF (the NVE end of the task's veth or tap): ilad prepares the port,
attaches the datapath, installs local delivery and registers the task with
mapsrv (a move, if it was registered elsewhere).`,
		Example: `  ilactl attach web --node nve1 --iface vweb --sir 3333:0:0:1::1001 --tenant t1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name, spec.Iface, spec.Tenant = args[0], ifc, tenant
			a, err := parseAddr6(sir)
			if err != nil {
				return fmt.Errorf("--sir: %w", err)
			}
			spec.SIR = a
			if mac != "" {
				if spec.MAC, err = ila.ParseMAC(mac); err != nil {
					return fmt.Errorf("--mac: %w", err)
				}
			}
			if ipv4 != "" {
				v4, err := netip.ParseAddr(ipv4)
				if err != nil || !v4.Is4() {
					return fmt.Errorf("--ipv4 %q: not an IPv4 address", ipv4)
				}
				spec.IPv4 = v4
			}
			spec.VNI, spec.Standby = vni, standby
			if err := spec.Validate(); err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			attach := c.Attach
			if prepare {
				attach = c.Prepare
			}
			st, err := attach(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(st)
			}
			return printTasks(g, []locator.TaskStatus{st})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&ifc, "iface", "", "NVE end of the task's link (required)")
	cmd.Flags().StringVar(&sir, "sir", "", "task's SIR address (required)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant")
	cmd.Flags().StringVar(&mac, "mac", "", "task's MAC (default: learnt by the NVE)")
	cmd.Flags().StringVar(&ipv4, "ipv4", "", "task's IPv4 address (IPv4 tenants, with --vni)")
	cmd.Flags().Uint32Var(&vni, "vni", 0, "tenant VNI of the IPv4 address")
	if prepare {
		prepareHelp(cmd)
		cmd.Flags().StringVar(&spec.QMP, "qmp", "", "QEMU monitor socket of the VM on this host: commit when the guest resumes")
	} else {
		cmd.Flags().BoolVar(&standby, "standby", false, "prepare the port and local delivery and register as the task's hot standby, without claiming it (it takes the task over if the task's NVE dies; docs/FAILOVER.md); attach again without it to commit (a hot move)")
	}
	_ = cmd.MarkFlagRequired("iface")
	_ = cmd.MarkFlagRequired("sir")
	return cmd
}

func newDetachCmd(g *globals) *cobra.Command {
	var f iladFlags
	cmd := &cobra.Command{
		Use:     "detach NAME",
		Short:   "Detach a task from an NVE (deregisters it)",
		Example: `  ilactl detach web --node nve1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.Detach(cmd.Context(), args[0]); err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"detached": args[0]})
			}
			fmt.Fprintf(g.stdout, "detached %s\n", args[0])
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newLocalTasksCmd(g *globals) *cobra.Command {
	var f iladFlags
	cmd := &cobra.Command{
		Use:     "local",
		Short:   "List the tasks attached to an NVE (ilad local API)",
		Example: `  ilactl local --node nve1 -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ts, err := c.Tasks(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(ts)
			}
			return printTasks(g, ts)
		},
	}
	f.add(cmd)
	return cmd
}

func printTasks(g *globals, ts []locator.TaskStatus) error {
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		reg := "no"
		if t.Registered {
			reg = "yes (" + time.Duration(t.Granted).String() + ")"
		}
		if t.Error != "" {
			reg = t.Error
		}
		rows = append(rows, []string{t.Name, t.Tenant, t.Iface, strconv.Itoa(t.Ifindex), t.SIR.String(), t.Domain, t.Locator.String(), string(t.State), reg})
	}
	return g.printTable([]string{"NAME", "TENANT", "IFACE", "IFINDEX", "SIR", "DOMAIN", "LOCATOR", "STATE", "REGISTERED"}, rows)
}
