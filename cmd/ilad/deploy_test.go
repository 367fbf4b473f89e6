package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestDeployFiles checks deploy/systemd/ilad.service against ilad's flags
// and decodes deploy/config/ilad.json as ilad does (unknown fields
// refused; the files it names exist only on a host, so it is not run).
func TestDeployFiles(t *testing.T) {
	var help bytes.Buffer
	_ = run(t.Context(), []string{"-h"}, &help)
	testutil.CheckUnit(t, "../../deploy/systemd/ilad.service", "", testutil.HelpFlags(help.String()))
	b, err := os.ReadFile("../../deploy/config/ilad.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("deploy/config/ilad.json: %v", err)
	}
	if c.Node == "" || len(c.Etcd) == 0 || c.Files.Cert == "" || c.Files.Key == "" || c.Files.CA == "" || !c.Mapsrv.IsValid() {
		t.Errorf("deploy/config/ilad.json lacks node, etcd endpoints, etcd client certificate or mapsrv: %+v", c)
	}
	if err := c.Config.CheckSettings(); err != nil {
		t.Errorf("deploy/config/ilad.json: %v", err)
	}
}
