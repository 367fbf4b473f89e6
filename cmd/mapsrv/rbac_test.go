package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestRunRBACInit runs "mapsrv rbac-init" on an etcd: afterwards the
// reader user can read /ila/ and cannot write it.
func TestRunRBACInit(t *testing.T) {
	_, eps := etcdtest.Start(t)
	dir := t.TempDir()
	write := writer(t, dir)
	root := write("root", "root-password-1234\n")
	users := write("users", "# name role password\nmapsrv ila-writer mapsrv-pw\nilad ila-reader ilad-pw\ndnsbridge ila-reader\n")
	var out strings.Builder
	for _, bad := range [][]string{
		{"--etcd-endpoints", eps[0], "--users", users},
		{"--etcd-endpoints", eps[0], "--users", write("bad", "ilad admin x\n"), "--root-password-file", root},
		{"--etcd-endpoints", eps[0], "--users", users, "--root-password-file", write("short", "abc\n")},
	} {
		if err := run(t.Context(), append([]string{"rbac-init"}, bad...), &out); err == nil {
			t.Errorf("rbac-init %q: no error", bad)
		}
	}
	if err := run(t.Context(), []string{"rbac-init", "--etcd-endpoints", eps[0], "--users", users, "--root-password-file", root}, &out); err != nil {
		t.Fatalf("rbac-init: %v\n%s", err, out.String())
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: "ilad", Password: "ilad-pw", DialTimeout: 30 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(t.Context(), "/ila/", clientv3.WithPrefix()); err != nil {
		t.Errorf("reader get: %v", err)
	}
	if _, err := c.Put(t.Context(), "/ila/v1/domains/x", "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("reader put: %v, want permission denied", err)
	}
}

// TestRunEmbeddedRBAC starts mapsrv with --etcd-rbac-users twice (the
// second start finds authentication on): mapsrv works as its own user, a
// reader reads the mapping and cannot change it, an anonymous client gets
// nothing.
func TestRunEmbeddedRBAC(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv") // short: the etcd socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	write := writer(t, dir)
	root := write("root", "root-password-1234\n")
	users := write("users", "mapsrv ila-writer mapsrv-password\noperator ila-reader operator-password\n")
	sock := filepath.Join(dir, "c.sock")
	api := freePort(t, "tcp")
	args := []string{"--api-addr", api, "--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", "unix://" + sock,
		"--etcd-rbac-users", users, "--etcd-root-password-file", root}
	for i := range 2 {
		stop := start(t, api, args...)
		c := newClient(t, api, "")
		setupDomain := i == 0
		if setupDomain {
			setup(t, c, ila.CsumNeutralMap)
		}
		if ds, err := c.Domains(t.Context()); err != nil || len(ds) != 1 {
			t.Errorf("start %d: domains %v, %v", i+1, ds, err)
		}
		ro, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + sock}, Username: "operator", Password: "operator-password", DialTimeout: 30 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := ro.Get(t.Context(), "/ila/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) == 0 {
			t.Errorf("start %d: reader get: %v", i+1, err)
		}
		if _, err := ro.Put(t.Context(), "/ila/v1/domains/evil", "{}"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("start %d: reader put: %v, want permission denied", i+1, err)
		}
		ro.Close()
		anon, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + sock}, DialTimeout: 30 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := anon.Get(t.Context(), "/ila/", clientv3.WithPrefix()); err == nil {
			t.Errorf("start %d: anonymous get allowed", i+1)
		}
		anon.Close()
		stop()
	}
}

// writer returns a function that writes a file in dir and returns its path.
func writer(t *testing.T, dir string) func(name, content string) string {
	return func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
