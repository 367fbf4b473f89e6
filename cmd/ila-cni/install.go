package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// install is `ila-cni install`: what the DaemonSet's init container runs
// to put the plugin and its config on the node. Each file is written
// beside its target and renamed over it, so that a runtime never runs a
// half-copied plugin or reads a half-written config.
func install(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ila-cni install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin-dir", "/opt/cni/bin", "directory to install the plugin binary into")
	conf := fs.String("conf", "", "network config list to install (e.g. a ConfigMap's 10-ila.conflist)")
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "directory to install -conf into")
	token := fs.String("token", "", "mapsrv API token file to install (optional)")
	tokenDir := fs.String("token-dir", "/etc/ilamesh/cni", "directory to install -token into (mode 0600)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ila-cni install [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("install: unexpected arguments %q", fs.Args())
	}
	if *conf == "" {
		return errors.New("install: -conf is required")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: own binary: %w", err)
	}
	if err := copyFile(self, filepath.Join(*binDir, "ila-cni"), 0o755); err != nil {
		return err
	}
	if b, err := os.ReadFile(*conf); err != nil {
		return fmt.Errorf("install: %w", err)
	} else if _, err := parseConfList(b); err != nil {
		return fmt.Errorf("install: %s: %w", *conf, err)
	}
	if err := copyFile(*conf, filepath.Join(*confDir, filepath.Base(*conf)), 0o644); err != nil {
		return err
	}
	if *token != "" {
		if err := copyFile(*token, filepath.Join(*tokenDir, filepath.Base(*token)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// parseConfList checks every ila-cni entry of a config list.
func parseConfList(b []byte) (int, error) {
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return 0, fmt.Errorf("config list: %w", err)
	}
	n := 0
	for _, p := range list.Plugins {
		var typ struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(p, &typ); err != nil || typ.Type != "ila-cni" {
			continue
		}
		var m map[string]any
		_ = json.Unmarshal(p, &m)
		m["name"], m["cniVersion"] = list.Name, list.CNIVersion
		one, _ := json.Marshal(m)
		if _, err := parseConf(one); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("config list: no ila-cni plugin in it")
	}
	return n, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
