package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/spf13/cobra"
	"libvirt.org/go/libvirtxml"
)

// LibvirtNS is the XML namespace of the <task> element in a libvirt
// domain's <metadata> that names its ilamesh identity.
const LibvirtNS = "https://ilamesh.dev/xmlns/libvirt/1"

func newHookCmd(g *globals) *cobra.Command {
	hook := &cobra.Command{
		Use:   "hook",
		Short: "Hooks for hypervisor managers (libvirt)",
	}
	var f iladFlags
	lv := &cobra.Command{
		Use:   "libvirt DOMAIN OPERATION [SUB-OPERATION [EXTRA]]",
		Short: "libvirt's qemu hook: prepare, abort and release tasks of live-migrated VMs",
		Long: `libvirt runs /etc/libvirt/hooks/qemu with the domain name, the operation
and its sub-operation as arguments and the domain XML on stdin; install a
two-line script there that runs "ilactl hook libvirt --node NVE "$@""
(deploy/libvirt/qemu). The domain names its task in its metadata:

  <metadata>
    <ila:task xmlns:ila="` + LibvirtNS + `"
              tenant="t1" name="web" sir="3333:0:0:1::1001"/>
  </metadata>

(optional attributes: iface, the tap, by default the <target dev> of the
interface whose MAC is given by mac, or of the only interface; ipv4 and vni
for IPv4 tenants). Domains without it are not ilamesh tasks: the hook says so
and succeeds.

  prepare/start begin   prepare the task on this NVE (a missing tap is fine:
                        libvirt may create it later)
  started begin         prepare it (the tap exists now); failure aborts the
                        start or the incoming migration
  release end           prepared here: abort (failed incoming migration);
                        active or moved away: detach (a late detach after a
                        move never touches the mapping)

The task commits on the destination when the guest's first frame arrives on
its tap (QEMU's announce after the migration). The hook never calls back
into libvirt.`,
		Example: `  ilactl hook libvirt --node nve2 web started begin - < web.xml`,
		Args:    cobra.RangeArgs(2, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			sub := ""
			if len(args) > 2 {
				sub = args[2]
			}
			return libvirtHook(cmd.Context(), c, args[0], args[1], sub, cmd.InOrStdin(), cmd.ErrOrStderr())
		},
	}
	f.add(lv)
	hook.AddCommand(lv)
	return hook
}

// hookAction is what an event asks of this NVE.
type hookAction int

const (
	hookNothing     hookAction = iota
	hookPrepareSoft            // prepare; a missing port is not an error
	hookPrepare                // prepare; failure fails the hook
	hookRelease                // abort, detach or nothing, by the task's state
	hookCheck                  // parse the XML only (a bad identity fails the hook)
)

// libvirtAction maps libvirt's qemu hook events to actions.
func libvirtAction(op, sub string) hookAction {
	switch {
	case (op == "prepare" || op == "start") && sub == "begin":
		return hookPrepareSoft
	case op == "started" && sub == "begin":
		return hookPrepare
	case op == "release" && sub == "end":
		return hookRelease
	case op == "migrate" && sub == "begin":
		return hookCheck
	}
	return hookNothing
}

// releaseAction is what a release does to a task in state st.
func releaseAction(st locator.TaskState) string {
	switch st {
	case locator.StatePrepared:
		return "abort"
	case locator.StateActive, locator.StateMoved:
		return "detach"
	}
	return ""
}

// hookClient is the part of ilad's API the hook uses.
type hookClient interface {
	Prepare(ctx context.Context, t locator.TaskSpec) (locator.TaskStatus, error)
	Task(ctx context.Context, name string) (locator.TaskStatus, error)
	Abort(ctx context.Context, name string) error
	Detach(ctx context.Context, name string) error
}

// libvirtHook handles one event. Its error makes the hook exit non-zero,
// which libvirt takes as a veto only for the begin events of prepare,
// start, started and migrate; release errors are logged and succeed.
func libvirtHook(ctx context.Context, c hookClient, domain, op, sub string, stdin io.Reader, log io.Writer) error {
	act := libvirtAction(op, sub)
	if act == hookNothing {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
	if err != nil {
		return fmt.Errorf("libvirt hook %s %s: read domain XML: %w", domain, op, err)
	}
	spec, ok, err := taskFromDomain(string(b))
	if err != nil {
		err = fmt.Errorf("libvirt hook %s %s %s: %w", domain, op, sub, err)
		if act == hookRelease {
			fmt.Fprintf(log, "ilactl: %v\n", err)
			return nil
		}
		return err
	}
	if !ok {
		fmt.Fprintf(log, "ilactl: libvirt hook: domain %s has no <ila:task> metadata (%s): not an ilamesh task\n", domain, LibvirtNS)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch act {
	case hookPrepareSoft, hookPrepare:
		st, err := c.Prepare(ctx, spec)
		if act == hookPrepareSoft && errors.Is(err, locator.ErrNoPort) {
			fmt.Fprintf(log, "ilactl: libvirt hook %s %s: tap %s not there yet; prepared at started\n", domain, op, spec.Iface)
			return nil
		}
		if err != nil {
			return fmt.Errorf("libvirt hook %s %s: prepare task %s on %s: %w", domain, op, spec.Name, spec.Iface, err)
		}
		fmt.Fprintf(log, "ilactl: libvirt hook %s %s: task %s %s on %s\n", domain, op, spec.Name, st.State, spec.Iface)
	case hookRelease:
		st, err := c.Task(ctx, spec.Name)
		if errors.Is(err, locator.ErrNotFound) {
			fmt.Fprintf(log, "ilactl: libvirt hook %s release: task %s not on this NVE\n", domain, spec.Name)
			return nil
		}
		if err != nil {
			fmt.Fprintf(log, "ilactl: libvirt hook %s release: task %s: %v\n", domain, spec.Name, err)
			return nil
		}
		switch releaseAction(st.State) {
		case "abort":
			err = c.Abort(ctx, spec.Name)
		case "detach":
			err = c.Detach(ctx, spec.Name)
		}
		if err != nil {
			fmt.Fprintf(log, "ilactl: libvirt hook %s release: task %s (%s): %v\n", domain, spec.Name, st.State, err)
			return nil
		}
		fmt.Fprintf(log, "ilactl: libvirt hook %s release: task %s was %s: %sed\n", domain, spec.Name, st.State, releaseAction(st.State))
	}
	return nil
}

// libvirtTask is the <ila:task> metadata element.
type libvirtTask struct {
	Tenant string `xml:"tenant,attr"`
	Name   string `xml:"name,attr"`
	SIR    string `xml:"sir,attr"`
	Iface  string `xml:"iface,attr"`
	MAC    string `xml:"mac,attr"`
	IPv4   string `xml:"ipv4,attr"`
	VNI    string `xml:"vni,attr"`
}

// taskFromDomain reads the task spec of a libvirt domain XML; ok is false
// for a domain without ilamesh metadata.
func taskFromDomain(doc string) (spec locator.TaskSpec, ok bool, err error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(doc); err != nil {
		return spec, false, fmt.Errorf("domain XML: %w", err)
	}
	if d.Metadata == nil {
		return spec, false, nil
	}
	var lt *libvirtTask
	dec := xml.NewDecoder(strings.NewReader(d.Metadata.XML))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return spec, false, fmt.Errorf("domain %s metadata: %w", d.Name, err)
		}
		if se, isStart := tok.(xml.StartElement); isStart && se.Name.Space == LibvirtNS && se.Name.Local == "task" {
			lt = &libvirtTask{}
			if err := dec.DecodeElement(lt, &se); err != nil {
				return spec, false, fmt.Errorf("domain %s: <task> metadata: %w", d.Name, err)
			}
			break
		}
	}
	if lt == nil {
		return spec, false, nil
	}
	spec.Name, spec.Tenant = lt.Name, lt.Tenant
	if lt.Name == "" || lt.Tenant == "" {
		return spec, false, fmt.Errorf("domain %s: <task> metadata needs tenant and name", d.Name)
	}
	if spec.SIR, err = netip.ParseAddr(lt.SIR); err != nil {
		return spec, false, fmt.Errorf("domain %s: task sir %q: %w", d.Name, lt.SIR, err)
	}
	if lt.IPv4 != "" {
		if spec.IPv4, err = netip.ParseAddr(lt.IPv4); err != nil {
			return spec, false, fmt.Errorf("domain %s: task ipv4 %q: %w", d.Name, lt.IPv4, err)
		}
	}
	if lt.VNI != "" {
		v, err := strconv.ParseUint(lt.VNI, 10, 32)
		if err != nil {
			return spec, false, fmt.Errorf("domain %s: task vni %q: %w", d.Name, lt.VNI, err)
		}
		spec.VNI = uint32(v)
	}
	// The task's interface: the one with the given MAC, else the only one.
	var ifc *libvirtxml.DomainInterface
	if d.Devices != nil {
		for i := range d.Devices.Interfaces {
			x := &d.Devices.Interfaces[i]
			if lt.MAC != "" {
				if x.MAC != nil && strings.EqualFold(x.MAC.Address, lt.MAC) {
					ifc = x
				}
				continue
			}
			if len(d.Devices.Interfaces) == 1 {
				ifc = x
			}
		}
	}
	mac := lt.MAC
	if ifc != nil && ifc.MAC != nil && mac == "" {
		mac = ifc.MAC.Address
	}
	if mac != "" {
		if spec.MAC, err = ila.ParseMAC(mac); err != nil {
			return spec, false, fmt.Errorf("domain %s: task mac %q: %w", d.Name, mac, err)
		}
	}
	spec.Iface = lt.Iface
	if spec.Iface == "" && ifc != nil && ifc.Target != nil {
		spec.Iface = ifc.Target.Dev
	}
	if spec.Iface == "" {
		return spec, false, fmt.Errorf("domain %s: task %s: which tap? give <target dev='...'/> on its interface or iface= in the metadata", d.Name, spec.Name)
	}
	if err := spec.Validate(); err != nil {
		return spec, false, fmt.Errorf("domain %s: %w", d.Name, err)
	}
	return spec, true, nil
}
