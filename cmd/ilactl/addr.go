package main

import (
	"fmt"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/spf13/cobra"
)

func newAddrCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "addr",
		Short: "Translate and decode ILA addresses (offline)",
	}
	cmd.AddCommand(newSIR2ILACmd(g), newILA2SIRCmd(g), newExplainCmd(g))
	return cmd
}

// csumFlag is a pflag.Value for a checksum mode.
type csumFlag struct{ m ila.CsumMode }

func (f *csumFlag) String() string { return f.m.String() }
func (f *csumFlag) Type() string   { return "mode" }
func (f *csumFlag) Set(s string) error {
	m, err := ila.ParseCsumMode(s)
	if err != nil {
		return fmt.Errorf("want one of no-action, adjust-transport, neutral-map, neutral-map-auto")
	}
	f.m = m
	return nil
}

func addCsumFlag(cmd *cobra.Command) *csumFlag {
	f := &csumFlag{m: ila.DefaultCsumMode}
	cmd.Flags().Var(f, "csum", "checksum mode: no-action, adjust-transport, neutral-map, neutral-map-auto")
	_ = cmd.RegisterFlagCompletionFunc("csum", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"no-action", "adjust-transport", "neutral-map", "neutral-map-auto"}, cobra.ShellCompDirectiveNoFileComp
	})
	return f
}

func parseAddr6(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: not an IPv6 address", s)
	}
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("address %q: not an IPv6 address", s)
	}
	return a, nil
}

func newSIR2ILACmd(g *globals) *cobra.Command {
	var loc string
	cmd := &cobra.Command{
		Use:   "sir2ila --locator LOC [--csum MODE] SIR_ADDRESS",
		Short: "Print the ILA address of a SIR address under a locator",
		Example: `  ilactl addr sir2ila --locator 2001:0:87:0 3333:0:0:1:2000:0:1:87
  2001:0:87:0:3000:0:1:333`,
		Args: cobra.ExactArgs(1),
	}
	csum := addCsumFlag(cmd)
	cmd.Flags().StringVar(&loc, "locator", "", "locator, as four hex groups (2001:0:87:0) or a /64")
	_ = cmd.MarkFlagRequired("locator")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		l, err := ila.ParseLocator(loc)
		if err != nil {
			return err
		}
		sir, err := parseAddr6(args[0])
		if err != nil {
			return err
		}
		out, err := ila.SIRToILA(sir, l, csum.m)
		if err != nil {
			return err
		}
		if g.json() {
			return g.printJSON(map[string]string{"sir": sir.String(), "locator": l.String(), "csum": csum.m.String(), "ila": out.String()})
		}
		_, err = fmt.Fprintln(g.stdout, out)
		return err
	}
	return cmd
}

func newILA2SIRCmd(g *globals) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "ila2sir --sir-prefix PREFIX [--csum MODE] ILA_ADDRESS",
		Short: "Print the SIR address of an ILA address",
		Example: `  ilactl addr ila2sir --sir-prefix 3333:0:0:1::/64 2001:0:87:0:3000:0:1:333
  3333:0:0:1:2000:0:1:87`,
		Args: cobra.ExactArgs(1),
	}
	csum := addCsumFlag(cmd)
	cmd.Flags().StringVar(&prefix, "sir-prefix", "", "SIR prefix, an IPv6 /64")
	_ = cmd.MarkFlagRequired("sir-prefix")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p, err := ila.ParseSIRPrefix(prefix)
		if err != nil {
			return err
		}
		a, err := parseAddr6(args[0])
		if err != nil {
			return err
		}
		out, err := ila.ILAToSIR(a, p, csum.m)
		if err != nil {
			return err
		}
		if g.json() {
			return g.printJSON(map[string]string{"ila": a.String(), "sir_prefix": p.String(), "csum": csum.m.String(), "sir": out.String()})
		}
		_, err = fmt.Fprintln(g.stdout, out)
		return err
	}
	return cmd
}

// explanation is the decoded form of an address, as `explain` prints it.
type explanation struct {
	Address    string  `json:"address"`
	Prefix     string  `json:"prefix"`
	Identifier string  `json:"identifier"`
	IDHex      string  `json:"identifier_hex"`
	Type       string  `json:"type"`
	TypeCode   uint8   `json:"type_code"`
	C          bool    `json:"c_bit"`
	ID         string  `json:"id"`
	VNID       *uint32 `json:"vnid,omitempty"`
	IPv4       string  `json:"ipv4,omitempty"`
	Low32      string  `json:"low32,omitempty"`
	// With --sir-prefix:
	SIRPrefix string `json:"sir_prefix,omitempty"`
	Kind      string `json:"kind,omitempty"` // "sir" or "ila"
	SIR       string `json:"sir,omitempty"`  // the SIR address when Kind is "ila"
	Csum      string `json:"csum,omitempty"`
	Note      string `json:"note,omitempty"`
}

func explain(a netip.Addr, p *ila.SIRPrefix, mode ila.CsumMode) explanation {
	id := ila.IdentifierOf(a)
	e := explanation{
		Address:    a.String(),
		Prefix:     ila.SIRPrefixOf(a).String(),
		Identifier: id.String(),
		IDHex:      id.Hex(),
		Type:       id.Type().String(),
		TypeCode:   uint8(id.Type()),
		C:          id.C(),
		ID:         fmt.Sprintf("%#x", id.ID()),
	}
	if v, ok := id.VNID(); ok {
		e.VNID = &v
		if ip := id.IPv4(); ip.IsValid() {
			e.IPv4 = ip.String()
		} else {
			e.Low32 = fmt.Sprintf("%#08x", id.Low32())
		}
	}
	if p == nil {
		return e
	}
	e.SIRPrefix = p.String()
	e.Csum = mode.String()
	if p.Contains(a) {
		e.Kind = "sir"
		if err := ila.CheckIdentifier(id, mode); err != nil {
			e.Note = "cannot be mapped under " + mode.String() + ": " + err.Error()
		} else if id.C() {
			e.Note = "C bit set in a SIR address: " + ila.ErrCBitSet.Error()
		}
		return e
	}
	e.Kind = "ila"
	if sir, err := ila.ILAToSIR(a, *p, mode); err == nil {
		e.SIR = sir.String()
	}
	return e
}

func newExplainCmd(g *globals) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "explain ADDRESS [--sir-prefix P] [--csum MODE]",
		Short: "Decode the identifier fields of an address",
		Long: `explain prints the fields of an address's identifier: type, C bit, the
60-bit id and, for virtual-network types, the VNID and IPv4 address. With
--sir-prefix it also says whether the address is a SIR address of that
prefix or an ILA address, and for an ILA address prints its SIR address.`,
		Example: `  ilactl addr explain 3333:0:0:1:4000:1:a00:5 -o json`,
		Args:    cobra.ExactArgs(1),
	}
	csum := addCsumFlag(cmd)
	cmd.Flags().StringVar(&prefix, "sir-prefix", "", "SIR prefix, an IPv6 /64 (optional)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		a, err := parseAddr6(args[0])
		if err != nil {
			return err
		}
		var pp *ila.SIRPrefix
		if prefix != "" {
			p, err := ila.ParseSIRPrefix(prefix)
			if err != nil {
				return err
			}
			pp = &p
		}
		e := explain(a, pp, csum.m)
		if g.json() {
			return g.printJSON(e)
		}
		rows := [][]string{
			{"address", e.Address}, {"prefix", e.Prefix}, {"identifier", e.Identifier + " (" + e.IDHex + ")"},
			{"type", fmt.Sprintf("%s (%d)", e.Type, e.TypeCode)}, {"c-bit", fmt.Sprint(e.C)}, {"id", e.ID},
		}
		if e.VNID != nil {
			rows = append(rows, []string{"vnid", fmt.Sprint(*e.VNID)})
		}
		if e.IPv4 != "" {
			rows = append(rows, []string{"ipv4", e.IPv4})
		}
		if e.Low32 != "" {
			rows = append(rows, []string{"low32", e.Low32})
		}
		if e.Kind != "" {
			rows = append(rows, []string{"sir-prefix", e.SIRPrefix}, []string{"kind", e.Kind}, []string{"csum", e.Csum})
		}
		if e.SIR != "" {
			rows = append(rows, []string{"sir", e.SIR})
		}
		if e.Note != "" {
			rows = append(rows, []string{"note", e.Note})
		}
		return g.printTable([]string{"FIELD", "VALUE"}, rows)
	}
	return cmd
}
