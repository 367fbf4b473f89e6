package main

import (
	"bytes"
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestDeployUnit checks deploy/systemd/mapsrv.service against the flags
// mapsrv defines and the variables deploy/config/mapsrv.env sets.
func TestDeployUnit(t *testing.T) {
	var help bytes.Buffer
	_ = run(t.Context(), []string{"-h"}, &help)
	testutil.CheckUnit(t, "../../deploy/systemd/mapsrv.service", "../../deploy/config/mapsrv.env", testutil.HelpFlags(help.String()))
}
