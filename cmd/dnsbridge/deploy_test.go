package main

import (
	"bytes"
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestDeployUnit checks deploy/systemd/dnsbridge.service against the flags
// dnsbridge defines and the variables deploy/config/dnsbridge.env sets.
func TestDeployUnit(t *testing.T) {
	var help bytes.Buffer
	_ = run(t.Context(), []string{"-h"}, &help)
	testutil.CheckUnit(t, "../../deploy/systemd/dnsbridge.service", "../../deploy/config/dnsbridge.env", testutil.HelpFlags(help.String()))
}
