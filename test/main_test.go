// Package test is the end-to-end acceptance suite: the whole system in
// network namespaces (deploy/lab), driven through the scenarios of the lab
// issue, each asserting packet counts. It needs root and skips under -short.
//
//	sudo go test ./test/ -v          # or ./test/run.sh for everything
package test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// binDir holds the cmd binaries built once by TestMain ("" when not built).
var binDir string

// buildErr says why the binaries are missing.
var buildErr error

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if !testing.Short() && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "ilae2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/mapsrv", "./cmd/ilad", "./cmd/dnsbridge", "./cmd/ilactl", "./cmd/ilalab")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		} else {
			binDir = dir
		}
	}
	return m.Run()
}
