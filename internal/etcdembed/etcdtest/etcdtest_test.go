package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
)

func TestStart(t *testing.T) {
	start := time.Now()
	cli, eps := etcdtest.Start(t)
	t.Logf("started in %s at %v", time.Since(start), eps)
	ctx := t.Context()
	if _, err := cli.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "/k")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get /k = %v, want v", resp.Kvs)
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	srv := etcdtest.StartServer(t, dir)
	cli := etcdtest.NewClient(t, srv.Endpoints())
	if _, err := cli.Put(t.Context(), "/k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	cli.Close()
	srv.Close()

	srv = etcdtest.StartServer(t, dir)
	cli = etcdtest.NewClient(t, srv.Endpoints())
	resp, err := cli.Get(t.Context(), "/k")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get /k after restart = %v, want v1", resp.Kvs)
	}
}

func TestClusterSurvivesOneMember(t *testing.T) {
	start := time.Now()
	c := etcdtest.StartCluster(t, 3)
	t.Logf("3-member cluster started in %s", time.Since(start))
	c.Members[0].Close()
	cli := etcdtest.NewClient(t, c.Endpoints[1:])
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put with one member down: %v", err)
	}
}
