package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
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
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: "ilad", Password: "ilad-pw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
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
