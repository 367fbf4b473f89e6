package etcdtest

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// StartProxy starts an etcd gRPC proxy (the KV and watch services of
// `etcd grpc-proxy`, which coalesces identical watches into one watch on
// the cluster and fans the events out) in front of endpoints, on a unix
// socket, and returns its endpoints. It stops at cleanup.
func StartProxy(t testing.TB, endpoints []string) []string {
	t.Helper()
	cli := NewClient(t, endpoints)
	sock := filepath.Join(socketDir(t), "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("etcdtest: proxy listener: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kvp, _ := grpcproxy.NewKvProxy(cli)
	wp, wdone := grpcproxy.NewWatchProxy(ctx, zap.NewNop(), cli)
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, kvp)
	pb.RegisterWatchServer(srv, wp)
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		srv.Stop()
		<-done
		<-wdone
	})
	return []string{"unix://" + sock}
}
