package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestInitRBAC is finding 9 of issue 17: after InitRBAC, mapsrv's user
// reads and writes the layout and nothing else, a reader (ilad, dnsbridge,
// an operator's etcdctl) reads but cannot write, and a client without
// credentials gets nothing.
func TestInitRBAC(t *testing.T) {
	cli, eps := etcdtest.Start(t)
	ctx := t.Context()
	if _, err := cli.Put(ctx, "/ila/v1/domains/prod", `{"name":"prod"}`); err != nil {
		t.Fatal(err)
	}
	users := []etcdstore.RBACUser{
		{Name: "mapsrv", Password: "mapsrv-pw", Role: etcdstore.RoleWriter},
		{Name: "ilad", Password: "ilad-pw", Role: etcdstore.RoleReader},
	}
	if err := etcdstore.InitRBAC(ctx, cli, "", "root-pw", users); err != nil {
		t.Fatal(err)
	}
	as := func(user, pw string) *clientv3.Client {
		t.Helper()
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: user, Password: pw, DialTimeout: 30 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatalf("client as %q: %v", user, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	denied := func(err error) bool {
		return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrInvalidAuthToken)
	}
	w, r := as("mapsrv", "mapsrv-pw"), as("ilad", "ilad-pw")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.Put(cctx, "/ila/v1/nves/nve1", `{"name":"nve1"}`); err != nil {
		t.Errorf("mapsrv writes /ila/: %v", err)
	}
	if _, err := w.Get(cctx, etcdstore.HealthKey); err != nil {
		t.Errorf("mapsrv reads its health key: %v", err)
	}
	if _, err := w.Put(cctx, "/other", "x"); !denied(err) {
		t.Errorf("mapsrv writes outside /ila/: %v, want permission denied", err)
	}
	if resp, err := r.Get(cctx, "/ila/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 2 {
		t.Errorf("reader lists /ila/: %v (%d keys), want 2", err, func() int {
			if resp == nil {
				return 0
			}
			return len(resp.Kvs)
		}())
	}
	if _, err := r.Put(cctx, "/ila/v1/map/prod/0000000000000001", "{}"); !denied(err) {
		t.Errorf("reader writes /ila/: %v, want permission denied", err)
	}
	if _, err := r.Delete(cctx, "/ila/v1/domains/prod"); !denied(err) {
		t.Errorf("reader deletes under /ila/: %v, want permission denied", err)
	}
	if c, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: "ilad", Password: "wrong", DialTimeout: 30 * time.Second, Logger: zap.NewNop()}); err == nil {
		_, err = c.Get(cctx, "/ila/", clientv3.WithPrefix())
		c.Close()
		if !denied(err) {
			t.Errorf("wrong password: %v, want refused", err)
		}
	}
	if _, err := as("", "").Get(cctx, "/ila/", clientv3.WithPrefix()); !denied(err) {
		t.Errorf("no credentials: %v, want refused", err)
	}
	// Again, as root: idempotent.
	if err := etcdstore.InitRBAC(ctx, as("root", "root-pw"), "", "root-pw", users); err != nil {
		t.Errorf("second run: %v", err)
	}
	if err := etcdstore.InitRBAC(ctx, cli, "", "root-pw", []etcdstore.RBACUser{{Name: "x", Role: "admin"}}); err == nil {
		t.Error("unknown role accepted")
	}
}
