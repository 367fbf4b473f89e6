package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "10-ila.conflist")
	tok := filepath.Join(dir, "api.token")
	bin, net, toks := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d"), filepath.Join(dir, "cni")
	args := []string{"-bin-dir", bin, "-conf", conf, "-conf-dir", net, "-token", tok, "-token-dir", toks}
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A config list without ila-cni, or with a bad entry: refused, nothing
	// written.
	for _, bad := range []string{
		`{"cniVersion":"1.1.0","name":"x","plugins":[{"type":"bridge"}]}`,
		`{"cniVersion":"1.1.0","name":"x","plugins":[{"type":"ila-cni","address":"dhcp"}]}`,
		`{"plugins":`,
	} {
		if err := os.WriteFile(conf, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := install(args, io.Discard); err == nil {
			t.Errorf("install of %s: no error", bad)
		}
		if _, err := os.Stat(filepath.Join(net, "10-ila.conflist")); err == nil {
			t.Fatalf("install of %s wrote the config", bad)
		}
	}
	good := `{"cniVersion":"1.1.0","name":"ila","plugins":[{"type":"ila-cni","mapsrv":{"url":"http://[fd00::1]:7480"}},{"type":"tuning"}]}`
	if err := os.WriteFile(conf, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := install(args, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Join(bin, "ila-cni"), 0o755}, {filepath.Join(net, "10-ila.conflist"), 0o644}, {filepath.Join(toks, "api.token"), 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
		} else if st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode().Perm(), f.mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(net, "10-ila.conflist")); string(b) != good {
		t.Errorf("installed config differs")
	}
	if err := install([]string{"-conf", conf, "extra"}, io.Discard); err == nil {
		t.Errorf("install with a stray argument: no error")
	}
}

// TestReadmeExample: the README's config example is the Kubernetes
// network config, and ila-cni accepts it.
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "## Containers (CNI)\n")
	_, block, ok2 := strings.Cut(sec, "```json\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal(`README: no "Containers (CNI)" section with a json block`)
	}
	if n, err := parseConfList([]byte(block)); err != nil || n != 1 {
		t.Errorf("README example: %v (%d ila-cni entries)", err, n)
	}
	k8s, err := os.ReadFile("../../deploy/kubernetes/10-ila.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if block != string(k8s) {
		t.Errorf("README example differs from deploy/kubernetes/10-ila.conflist")
	}
}
