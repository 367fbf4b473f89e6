//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		root    bool // the error needs root to be reached
	}{
		{"no command", nil, "no command", false},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`, false},
		{"up bad flag", []string{"up", "--nves", "x"}, "invalid value", false},
		{"up extra argument", []string{"up", "extra"}, `unexpected argument "extra"`, false},
		{"move without target", []string{"move", "t3"}, "usage: ilalab move TASK --to NVE", false},
		{"status bad output", []string{"status", "-o", "yaml", "--state-dir", "/nonexistent/ilalab"}, "no lab in /nonexistent/ilalab", false},
		{"router is ilad's role now", []string{"router"}, `unknown command "router"`, false},
		{"up with missing components", []string{"up", "--bin-dir", "EMPTY", "--state-dir", "STATE", "--name", "ilatestx"}, "component not available", true},
		{"demo with 2 nves", []string{"demo", "--nves", "2"}, "needs at least 3 NVEs", true},
		{"demo unknown scenario", []string{"demo", "--scenario", "meteor"}, `scenario "meteor": want move or failover`, false},
		{"demo cycles without failover", []string{"demo", "--cycles", "3"}, "--cycles 3: want a positive count with --scenario failover", false},
		{"demo negative cycles", []string{"demo", "--scenario", "failover", "--cycles", "-1"}, "--cycles -1", false},
		{"fail without target", []string{"fail"}, "usage: ilalab fail NVE|mapsrv", false},
		{"recover without target", []string{"recover"}, "usage: ilalab recover NVE|mapsrv", false},
		{"standby without --on", []string{"standby", "t1"}, "usage: ilalab standby TASK --on NVE", false},
		{"fail with --on", []string{"fail", "nve1", "--on", "nve2"}, "usage: ilalab fail", false},
		{"fail without a lab", []string{"fail", "nve1", "--state-dir", "/nonexistent/ilalab"}, "no lab in /nonexistent/ilalab", true},
		{"up with routers and a static fabric", []string{"up", "--routers", "2", "--fabric", "static", "--state-dir", "STATE", "--name", "ilatestr"}, "need --fabric frr and one DC", true},
		{"up with routers and 2 DCs", []string{"up", "--routers", "1", "--dcs", "2", "--state-dir", "STATE", "--name", "ilatestr"}, "need --fabric frr and one DC", true},
		{"up with too many routers", []string{"up", "--routers", "9", "--state-dir", "STATE", "--name", "ilatestr"}, "routers 9: want 0..8", true},
		{"up with a short lifetime", []string{"up", "--lifetime", "2s", "--state-dir", "STATE", "--name", "ilatesty"}, "lifetime 2s: want at least 4s", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to get past the root check")
			}
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				switch a {
				case "EMPTY", "STATE":
					a = t.TempDir()
				}
				args[i] = a
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", args, err, tc.wantErr)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"up", "status", "move", "demo", "down"} {
		if !strings.Contains(out.String(), "\n  "+c) {
			t.Errorf("help lacks %q:\n%s", c, out.String())
		}
	}
}

func TestRunNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("checks the message for non-root users")
	}
	for _, cmd := range []string{"up", "down", "demo"} {
		err := run(context.Background(), []string{cmd}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Errorf("%s as non-root: %v, want needs root", cmd, err)
		}
	}
}
