package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestDeployFiles checks each ilad unit in deploy/systemd against ilad's
// flags and the config file it names, decodes that file from
// deploy/config strictly (unknown fields refused) and reads it as ilad
// does (defaults, validation). The certificate files it names exist only
// on a host, so they are left out of that reading, and ilad is not run.
func TestDeployFiles(t *testing.T) {
	var help bytes.Buffer
	_ = run(t.Context(), []string{"-h"}, &help)
	known := testutil.HelpFlags(help.String())
	tests := []struct {
		unit, config string
		check        func(c *config) bool
		want         string
	}{
		{"ilad.service", "ilad.json", func(c *config) bool {
			return c.Role == roleNVE && len(c.Locators) > 0 && len(c.Mapsrv) > 0 && c.KeyFile != "" && c.Uplink != ""
		}, "an NVE with a locator, an uplink, mapsrv and a key file"},
		{"ila-router.service", "ila-router.json", func(c *config) bool {
			return c.Role == roleRouter && len(c.RouterPorts) > 0 && c.Metrics != "" && c.API == "" && c.StateFile == ""
		}, "a router with ports and metrics, no local API and no state file"},
	}
	for _, tc := range tests {
		t.Run(tc.unit, func(t *testing.T) {
			unit := filepath.Join("../../deploy/systemd", tc.unit)
			testutil.CheckUnit(t, unit, "", known)
			u, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(u), "--config /etc/ilamesh/"+tc.config) {
				t.Errorf("%s does not start ilad with --config /etc/ilamesh/%s", unit, tc.config)
			}
			path := filepath.Join("../../deploy/config", tc.config)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			var c config
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if c.Node == "" || len(c.Etcd) == 0 || c.Files.Cert == "" || c.Files.Key == "" || c.Files.CA == "" {
				t.Errorf("%s lacks node, etcd endpoints or etcd client certificate: %+v", path, c)
			}
			// ilad's own reading (flag defaults, validation), without the
			// certificate files, which exist only on a host.
			var raw map[string]any
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			delete(raw, "etcd_cert")
			delete(raw, "etcd_key")
			delete(raw, "etcd_ca")
			nb, _ := json.Marshal(raw)
			tmp := filepath.Join(t.TempDir(), tc.config)
			if err := os.WriteFile(tmp, nb, 0o600); err != nil {
				t.Fatal(err)
			}
			pc, err := parseConfig([]string{"-config", tmp}, new(bytes.Buffer))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			c = *pc
			if !tc.check(&c) {
				t.Errorf("%s is not %s: %+v", path, tc.want, c)
			}
		})
	}
}
