package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"
)

// bgpStatus is the part of ilad's GET /v1/bgp that ilactl prints as text
// (-o json prints all of it).
type bgpStatus struct {
	Mode    string `json:"mode"`
	Refused int    `json:"refused_locators"`
	Speaker *struct {
		ASN       uint32   `json:"asn"`
		NextHop   string   `json:"next_hop"`
		Ready     bool     `json:"ready"`
		Drained   bool     `json:"drained"`
		Announced []string `json:"announced"`
		Peers     []struct {
			Address  string `json:"address"`
			ASN      uint32 `json:"asn"`
			State    string `json:"state"`
			Failures uint64 `json:"failures"`
			Received uint64 `json:"received"`
			GR       bool   `json:"graceful_restart"`
		} `json:"peers"`
	} `json:"speaker"`
	Kernel *struct {
		Ready     bool     `json:"ready"`
		Drained   bool     `json:"drained"`
		Installed []string `json:"installed"`
	} `json:"kernel"`
}

// newNVEBGPCmds are ilactl nve bgp, drain and undrain (ilad local API).
func newNVEBGPCmds(g *globals) []*cobra.Command {
	mk := func(use, short, method, path string) *cobra.Command {
		var f iladFlags
		cmd := &cobra.Command{
			Use:   use + " [--node NAME | --ilad ADDR]",
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := f.client()
				if err != nil {
					return err
				}
				var raw json.RawMessage
				if err := c.Call(cmd.Context(), method, path, nil, &raw); err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(raw)
				}
				var st bgpStatus
				if err := json.Unmarshal(raw, &st); err != nil {
					return fmt.Errorf("ilad answer: %w", err)
				}
				return printBGP(g, st)
			},
		}
		f.add(cmd)
		return cmd
	}
	return []*cobra.Command{
		mk("bgp", "Show the NVE's routing side: announced locators and BGP peers", http.MethodGet, "/v1/bgp"),
		mk("drain", "Withdraw the NVE's locators from the fabric (tasks should move away first)", http.MethodPost, "/v1/bgp/drain"),
		mk("undrain", "Announce the NVE's locators again after a drain", http.MethodPost, "/v1/bgp/undrain"),
	}
}

func printBGP(g *globals, st bgpStatus) error {
	if k := st.Kernel; k != nil {
		fmt.Fprintf(g.stdout, "mode kernel: ready %v, drained %v, installed %v, refused locators %d\n", k.Ready, k.Drained, k.Installed, st.Refused)
		return nil
	}
	s := st.Speaker
	if s == nil {
		return fmt.Errorf("ilad answered without a speaker or kernel state")
	}
	fmt.Fprintf(g.stdout, "AS %d, next hop %s: ready %v, drained %v, announced %v, refused locators %d\n", s.ASN, s.NextHop, s.Ready, s.Drained, s.Announced, st.Refused)
	var rows [][]string
	for _, p := range s.Peers {
		rows = append(rows, []string{p.Address, strconv.FormatUint(uint64(p.ASN), 10), p.State, strconv.FormatUint(p.Received, 10), strconv.FormatUint(p.Failures, 10), strconv.FormatBool(p.GR)})
	}
	return g.printTable([]string{"PEER", "AS", "STATE", "RECEIVED", "FAILURES", "GR"}, rows)
}
