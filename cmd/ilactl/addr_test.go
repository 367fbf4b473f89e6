package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ilactl runs one command line and returns stdout and the error.
func ilactl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	return out.String(), err
}

func TestAddrVectors(t *testing.T) {
	// The public vectors of ILA.md, through the CLI.
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"addr", "sir2ila", "--locator", "2001:0:87:0", "3333:0:0:1:2000:0:1:87"}, "2001:0:87:0:3000:0:1:333\n"},
		{[]string{"addr", "sir2ila", "--locator", "2001:0:87:0", "--csum", "neutral-map", "3333:0:0:1:2000:0:1:87"}, "2001:0:87:0:3000:0:1:333\n"},
		{[]string{"addr", "sir2ila", "--locator", "2001:0:87:0", "--csum", "neutral-map-auto", "3333:0:0:1:2000:0:1:87"}, "2001:0:87:0:2000:0:1:1333\n"},
		{[]string{"addr", "sir2ila", "--locator", "2001:0:87:1", "--csum", "neutral-map-auto", "3333:0:0:1:2000:0:2:87"}, "2001:0:87:1:2000:0:2:1332\n"},
		{[]string{"addr", "sir2ila", "--locator", "2001:0:87::/64", "--csum", "no-action", "3333:0:0:1:2000:0:1:87"}, "2001:0:87:0:2000:0:1:87\n"},
		{[]string{"addr", "ila2sir", "--sir-prefix", "3333:0:0:1::/64", "2001:0:87:0:3000:0:1:333"}, "3333::1:2000:0:1:87\n"},
		{[]string{"addr", "ila2sir", "--sir-prefix", "3333:0:0:1::/64", "--csum", "neutral-map-auto", "2001:0:87:1:2000:0:2:1332"}, "3333::1:2000:0:2:87\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			got, err := ilactl(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddrErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"zero low16", []string{"addr", "sir2ila", "--locator", "2001:0:87:0", "3333:0:0:1:2000:0:1:0"}, "0x0000 and cannot round-trip"},
		{"C bit", []string{"addr", "sir2ila", "--locator", "2001:0:87:0", "3333:0:0:1:3000:0:1:87"}, "C bit set"},
		{"bad locator", []string{"addr", "sir2ila", "--locator", "2001:87", "3333::1"}, "parse locator"},
		{"no locator", []string{"addr", "sir2ila", "3333::1"}, "locator"},
		{"bad mode", []string{"addr", "sir2ila", "--locator", "1:2:3:4", "--csum", "neutral", "3333::1"}, "neutral-map-auto"},
		{"ipv4 address", []string{"addr", "sir2ila", "--locator", "1:2:3:4", "10.0.0.1"}, "not an IPv6 address"},
		{"garbage address", []string{"addr", "ila2sir", "--sir-prefix", "3333::/64", "zz"}, "not an IPv6 address"},
		{"prefix length", []string{"addr", "ila2sir", "--sir-prefix", "3333::/48", "3333::1"}, "/48, want /64"},
		{"two args", []string{"addr", "explain", "::1", "::2"}, "accepts 1 arg"},
		{"bad output", []string{"addr", "explain", "-o", "yaml", "::1"}, "output format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ilactl(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	out, err := ilactl(t, "addr", "explain", "-o", "json", "--sir-prefix", "fd00:5151::/64", "fd00:5151::4000:64:a00:5")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"address": "fd00:5151::4000:64:a00:5", "prefix": "fd00:5151::/64",
		"identifier": "4000:64:a00:5", "identifier_hex": "400000640a000005",
		"type": "vn-ipv4", "type_code": float64(2), "c_bit": false, "id": "0x640a000005",
		"vnid": float64(100), "ipv4": "10.0.0.5",
		"sir_prefix": "fd00:5151::/64", "kind": "sir", "csum": "neutral-map",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}

	out, err = ilactl(t, "addr", "explain", "--sir-prefix", "3333:0:0:1::/64", "2001:0:87:0:3000:0:1:333")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"kind        ila", "sir         3333::1:2000:0:1:87", "c-bit       true"} {
		if !strings.Contains(out, s) {
			t.Errorf("explain table lacks %q:\n%s", s, out)
		}
	}
	out, _ = ilactl(t, "addr", "explain", "--sir-prefix", "3333:0:0:1::/64", "3333:0:0:1:2000:0:1:0")
	if !strings.Contains(out, "cannot be mapped under neutral-map") {
		t.Errorf("explain does not warn about 0x0000:\n%s", out)
	}
}
