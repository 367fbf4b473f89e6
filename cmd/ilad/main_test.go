package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdtls/etcdtlstest"
	"github.com/ilamesh/ilamesh/locator"
)

func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"node": "a", "bogus": 1}`), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no node", []string{"-locator", "2001:0:0:1", "-etcd", "unix:///x"}, "node name: empty"},
		{"no locator", []string{"-node", "a", "-etcd", "unix:///x"}, "no locator"},
		{"bad locator", []string{"-node", "a", "-locator", "2001::/48", "-etcd", "unix:///x"}, "flag -locator"},
		{"no etcd", []string{"-node", "a", "-locator", "2001:0:0:1"}, "no etcd endpoint"},
		{"negative table size", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-max-mappings", "-1"}, "max mappings"},
		{"mapsrv without key", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-mapsrv", "[::1]:7480"}, "needs -key-file"},
		{"bad mapsrv", []string{"-node", "a", "-mapsrv", "nohost"}, "flag -mapsrv"},
		{"bad second mapsrv", []string{"-node", "a", "-mapsrv", "[::1]:7480,nohost"}, "flag -mapsrv"},
		{"mapsrv twice", []string{"-node", "a", "-mapsrv", "[::1]:7480", "-mapsrv", "[::1]:7480"}, "given twice"},
		{"mapsrv ipv4 and ipv6", []string{"-node", "a", "-mapsrv", "[::1]:7480,127.0.0.1:7480"}, "all IPv4 or all IPv6"},
		{"bad mode", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-mode", "both"}, "mode"},
		{"etcd cert without key", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "https://[::1]:2379", "-etcd-cert", "/etc/hostname"}, "go together"},
		{"missing etcd ca", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "https://[::1]:2379", "-etcd-ca", "/nonexistent/ca.crt"}, "etcd tls"},
		{"negative pull ttl", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-mode", "pull", "-pull-ttl", "-1s"}, "pull ttl"},
		{"bad miss policy", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-miss-policy", "x"}, "miss policy"},
		{"unknown field in file", []string{"-config", bad}, "unknown field"},
		{"missing file", []string{"-config", filepath.Join(dir, "nope.json")}, "config file"},
		{"stray argument", []string{"-node", "a", "extra"}, "unexpected arguments"},
		{"bad role", []string{"-role", "border", "-node", "r", "-etcd", "unix:///x"}, `role "border": want nve or router`},
		{"ports on an nve", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-ports", "eth1"}, "-ports is for -role router"},
		{"router without ports", []string{"-role", "router", "-node", "r", "-etcd", "unix:///x"}, "no port to attach the router to"},
		{"router without etcd", []string{"-role", "router", "-node", "r", "-ports", "eth1"}, "no etcd endpoint"},
		{"router without name", []string{"-role", "router", "-ports", "eth1", "-etcd", "unix:///x"}, "node name: empty"},
		{"router bad port", []string{"-role", "router", "-node", "r", "-ports", "a/b", "-etcd", "unix:///x"}, `port "a/b"`},
		{"router with locator", []string{"-role", "router", "-node", "r", "-ports", "eth1", "-etcd", "unix:///x", "-locator", "2001:0:0:1"}, "-locator is an NVE's setting"},
		{"router with uplink", []string{"-role", "router", "-node", "r", "-ports", "eth1", "-etcd", "unix:///x", "-uplink", "eth0"}, "-uplink is an NVE's setting"},
		{"router with mapsrv", []string{"-role", "router", "-node", "r", "-ports", "eth1", "-etcd", "unix:///x", "-mapsrv", "[::1]:7480", "-key-file", "/k"}, "-mapsrv is an NVE's setting"},
		{"router in pull mode", []string{"-role", "router", "-node", "r", "-ports", "eth1", "-etcd", "unix:///x", "-mode", "pull"}, "-mode pull is an NVE's setting"},
		{"tcp api without tokens", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api", "[::1]:7483"}, "give -api-token-file"},
		{"tcp api off loopback without tls", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api", "[fd00::1]:7483", "-api-token-file", "/nonexistent"}, "give -api-cert and -api-key"},
		{"tcp api token file missing", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api", "[::1]:7483", "-api-token-file", "/nonexistent"}, "-api-token-file: api token file"},
		{"api cert without key", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api-cert", "/c"}, "-api-cert and -api-key go together"},
		{"tokens on a socket", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api", "/run/a.sock", "-api-token-file", "/t"}, "is a unix socket"},
		{"advertise a socket", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api-advertise", "https://[fd00::1]:7483"}, "not on TCP"},
		{"advertise not a url", []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-api-advertise", "fd00::1:7483"}, "want http(s)://HOST:PORT"},
		{"router advertises", []string{"-role", "router", "-node", "r", "-ports", "eth1", "-etcd", "unix:///x", "-api-advertise", "https://[fd00::1]:7483"}, "-api-advertise"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-locator") {
		t.Errorf("-h: %v\n%s", err, stderr.String())
	}
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	certs := etcdtlstest.Write(t)
	ca, cert, key := certs.CA, certs.ClientCert, certs.ClientKey
	file := filepath.Join(dir, "ilad.json")
	os.WriteFile(file, []byte(strings.ReplaceAll(`{
  "node": "nve1",
  "locators": ["prod=2001:db8:0:1"],
  "uplink": "eth0",
  "etcd": ["unix:///run/etcd.sock"],
  "mapsrv": "[2001:db8::100]:7480",
  "key_file": "/etc/ila/keys",
  "mode": "pull",
  "in_flight": "5s",
  "pull_ttl": "90s",
  "etcd_ca": "@CA@",
  "tasks": [{"name": "web", "tenant": "t1", "iface": "vweb", "sir": "3333:0:0:1::1001", "mac": "02:00:00:00:10:01"}]
}`, "@CA@", ca)), 0o600)
	cfg, err := parseConfig([]string{"-config", file, "-uplink", "fab0", "-netns", "nve1", "-pull-max", "1000", "-max-mappings", "2097152", "-etcd-cert", cert, "-etcd-key", key}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := ila.ParseLocator("2001:db8:0:1")
	if diff := cmp.Diff([]locator.LocatorSpec{{Domain: "prod", Locator: loc}}, cfg.Locators); diff != "" {
		t.Errorf("locators (-want +got):\n%s", diff)
	}
	checks := []struct{ what, got, want string }{
		{"uplink (flag wins)", cfg.Uplink, "fab0"},
		{"netns", cfg.NetNS, "/var/run/netns/nve1"},
		{"mode", string(cfg.Mode), "pull"},
		{"pull ttl (file)", time.Duration(cfg.PullTTL).String(), "1m30s"},
		{"pull max (flag)", fmt.Sprint(cfg.PullMax), "1000"},
		{"max mappings (flag)", fmt.Sprint(cfg.MaxMappings), "2097152"},
		{"etcd ca (file)", cfg.Files.CA, ca},
		{"etcd cert (flag)", cfg.Files.Cert, cert},
		{"api default", cfg.API, "/run/ilad/nve1.sock"},
		{"bpffs default", cfg.BPFFS, "/sys/fs/bpf/ila/nve1"},
		{"mapsrv", cfg.Mapsrv.String(), "[2001:db8::100]:7480"},
		{"task", cfg.Tasks[0].SIR.String(), "3333:0:0:1::1001"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestRouterConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "router.json")
	os.WriteFile(file, []byte(`{
  "role": "router",
  "node": "r1",
  "ports": ["fab1", "fab2"],
  "etcd": ["unix:///run/etcd.sock"],
  "metrics": "[::1]:9464"
}`), 0o600)
	cfg, err := parseConfig([]string{"-config", file, "-events", "/tmp/ev.jsonl", "-netns", "fabric"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Role, Node, BPFFS, API, StateFile, NetNS, Events, Metrics string
		Ports                                                     []string
		Router                                                    bool
		Mode                                                      locator.Mode
	}
	want := summary{Role: "router", Node: "r1", BPFFS: "/sys/fs/bpf/ila/r1", NetNS: "/var/run/netns/fabric", Events: "/tmp/ev.jsonl",
		Metrics: "[::1]:9464", Ports: []string{"fab1", "fab2"}, Router: true, Mode: locator.ModePush}
	got := summary{cfg.Role, cfg.Node, cfg.BPFFS, cfg.API, cfg.StateFile, cfg.NetNS, cfg.Events, cfg.Metrics, cfg.RouterPorts, cfg.Config.Router, cfg.Mode}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("router config (-want +got):\n%s", diff)
	}
	// Flags win over the file; the default role is nve.
	cfg, err = parseConfig([]string{"-config", file, "-ports", "fab3"}, new(bytes.Buffer))
	if err != nil || !slices.Equal(cfg.RouterPorts, []string{"fab3"}) {
		t.Errorf("-ports over the file: %v, %v", cfg.RouterPorts, err)
	}
	cfg, err = parseConfig([]string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x"}, new(bytes.Buffer))
	if err != nil || cfg.Role != "nve" || cfg.Config.Router {
		t.Errorf("default role: %q (router %v), %v; want nve", cfg.Role, cfg.Config.Router, err)
	}
}

// TestMapsrvReplicas: several mapsrv addresses, comma-separated or
// repeated on the command line, a string or an array in the file.
func TestMapsrvReplicas(t *testing.T) {
	base := []string{"-node", "a", "-locator", "2001:0:0:1", "-etcd", "unix:///x", "-key-file", "/k"}
	want := "[2001:db8::1]:4790,[2001:db8::2]:4791"
	for _, args := range [][]string{
		{"-mapsrv", "[2001:db8::1]:4790,[2001:db8::2]:4791"},
		{"-mapsrv", "[2001:db8::1]:4790", "-mapsrv", "[2001:db8::2]:4791"},
	} {
		cfg, err := parseConfig(append(slices.Clone(base), args...), new(bytes.Buffer))
		if err != nil || cfg.Mapsrv.String() != want {
			t.Errorf("%q: mapsrv %v, %v; want %s", args, cfg.Mapsrv, err, want)
		}
	}
	dir := t.TempDir()
	for i, v := range []string{`"[2001:db8::1]:4790,[2001:db8::2]:4791"`, `["[2001:db8::1]:4790", "[2001:db8::2]:4791"]`} {
		file := filepath.Join(dir, fmt.Sprintf("c%d.json", i))
		os.WriteFile(file, []byte(`{"mapsrv": `+v+`}`), 0o600)
		cfg, err := parseConfig(append(slices.Clone(base), "-config", file), new(bytes.Buffer))
		if err != nil || cfg.Mapsrv.String() != want {
			t.Errorf("file %s: mapsrv %v, %v; want %s", v, cfg.Mapsrv, err, want)
		}
		// The flag wins over the file.
		cfg, err = parseConfig(append(slices.Clone(base), "-config", file, "-mapsrv", "[2001:db8::3]:4790"), new(bytes.Buffer))
		if err != nil || cfg.Mapsrv.String() != "[2001:db8::3]:4790" {
			t.Errorf("file %s and flag: mapsrv %v, %v", v, cfg.Mapsrv, err)
		}
	}
	file := filepath.Join(dir, "bad.json")
	os.WriteFile(file, []byte(`{"mapsrv": 4790}`), 0o600)
	if _, err := parseConfig(append(slices.Clone(base), "-config", file), new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), "mapsrv") {
		t.Errorf("a number for mapsrv: %v", err)
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := parseConfig([]string{"-config", "testdata/ilad.example.json"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tasks) != 2 || cfg.Tasks[1].VNI != 100 || !cfg.NotifyListen.IsValid() || cfg.Metrics == "" {
		t.Errorf("example config parsed as %+v", cfg)
	}
}
