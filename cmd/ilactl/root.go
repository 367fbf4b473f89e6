package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// globals are the flags every command shares.
type globals struct {
	stdout, stderr io.Writer
	api            string // mapsrv management API base URL
	tokenFile      string // mapsrv management API token file
	caFile         string // CA that signed mapsrv's API certificate
	output         string // table | json
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "ilactl",
		Short: "Operate an ILA mobility router: addresses, domains, NVEs, tasks and moves",
		Long: `ilactl is the operator CLI of the ILA (Identifier-Locator Addressing)
mobility router. "addr" works offline; the other commands talk to mapsrv's
management API (--api or $ILACTL_API) or to ilad's local API.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	api := os.Getenv("ILACTL_API")
	if api == "" {
		api = "http://127.0.0.1:7480"
	}
	root.PersistentFlags().StringVar(&g.api, "api", api, "mapsrv management API URL (default $ILACTL_API)")
	root.PersistentFlags().StringVar(&g.tokenFile, "token-file", os.Getenv("ILACTL_TOKEN_FILE"), "file holding the mapsrv API bearer token (its first token; default $ILACTL_TOKEN_FILE, or the token itself in $ILACTL_TOKEN)")
	root.PersistentFlags().StringVar(&g.caFile, "ca-file", os.Getenv("ILACTL_CA_FILE"), "verify mapsrv's https API against the CA certificates in this PEM file (default $ILACTL_CA_FILE; without it, the system's roots)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return fmt.Errorf("output format %q: want table or json", g.output)
		}
		return nil
	}

	// One line per command group.
	root.AddCommand(
		newAddrCmd(g),
		newDomainCmd(g), newNVECmd(g), newTaskCmd(g), newWatchCmd(g), newPolicyCmd(g),
		newAttachCmd(g), newDetachCmd(g), newLocalTasksCmd(g),
		newExpectCmd(g), newPrepareCmd(g), newCommitCmd(g), newAbortCmd(g), newHandoverCmd(g), newHookCmd(g),
		newWhereCmd(g), newMonitorCmd(g),
	)
	return root
}

// mapsrvClient returns a client of mapsrv's management API for --api, with the
// token of --token-file or $ILACTL_TOKEN.
func (g *globals) mapsrvClient() (*apiclient.Client, error) {
	if !strings.HasPrefix(g.api, "http://") && !strings.HasPrefix(g.api, "https://") {
		return nil, fmt.Errorf("--api %q: want a URL like http://127.0.0.1:7480", g.api)
	}
	tok := os.Getenv("ILACTL_TOKEN")
	if g.tokenFile != "" {
		toks, err := mapsrv.ReadTokenFile(g.tokenFile)
		if err != nil {
			return nil, err
		}
		tok = toks[0]
	}
	var hc *http.Client
	if g.caFile != "" {
		if !strings.HasPrefix(g.api, "https://") {
			return nil, fmt.Errorf("--ca-file is for an https API; --api is %q", g.api)
		}
		tc, err := apiclient.TLSConfig(g.caFile)
		if err != nil {
			return nil, err
		}
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	c, err := apiclient.New(apiclient.Config{URL: g.api, Token: tok, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("--api %q: want a URL like http://127.0.0.1:7480", g.api)
	}
	return c, nil
}

// json reports whether -o json was asked for.
func (g *globals) json() bool { return g.output == "json" }

// printJSON writes v as indented JSON.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows under a header, aligned.
func (g *globals) printTable(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	for i, h := range header {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, h)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
