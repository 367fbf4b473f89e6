// Package etcdtest starts embedded etcd servers for tests.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// socketDir returns a directory whose paths are short enough for unix
// sockets: t.TempDir() when possible, a short temporary directory otherwise.
func socketDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) < 80 {
		return dir
	}
	dir, err := os.MkdirTemp("", "etcd")
	if err != nil {
		t.Fatalf("etcdtest: make temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Start starts a single-member embedded etcd whose data lives in a
// temporary directory and whose client endpoint is a unix socket with an
// absolute path (reachable from every network namespace). It returns a
// client (closed at cleanup) and the endpoints. The server is closed in
// t.Cleanup.
func Start(t testing.TB) (cli *clientv3.Client, endpoints []string) {
	t.Helper()
	srv := StartServer(t, socketDir(t))
	return NewClient(t, srv.Endpoints()), srv.Endpoints()
}

// StartServer starts a single-member embedded etcd in dir (which may hold
// the data of a previous member: it is restarted) and closes it at cleanup.
// Its client endpoint is the unix socket dir/etcd.sock.
func StartServer(t testing.TB, dir string) *etcdembed.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{
		Dir:           filepath.Join(dir, "data"),
		ClientURLs:    []string{"unix://" + filepath.Join(dir, "etcd.sock")},
		PeerURLs:      []string{"unix://" + filepath.Join(dir, "peer.sock")},
		UnsafeNoFsync: true,
	})
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// NewClient returns a quiet client of endpoints, closed at cleanup.
func NewClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var clusterSeq atomic.Int64

// Cluster is a multi-member embedded etcd cluster.
type Cluster struct {
	Members   []*etcdembed.Server
	Endpoints []string // client endpoints, one per member, in member order
}

// StartCluster starts an n-member embedded etcd cluster with loopback TCP
// peer URLs and unix-socket client URLs. Members are closed at cleanup;
// a test may close one earlier to simulate a failure.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := socketDir(t)
	token := fmt.Sprintf("ilatest-%d-%d", os.Getpid(), clusterSeq.Add(1))
	names := make([]string, n)
	peers := make([]string, n)
	var initial []string
	for i := range n {
		names[i] = fmt.Sprintf("m%d", i)
		peers[i] = "http://" + freeAddr(t)
		initial = append(initial, names[i]+"="+peers[i])
	}
	c := &Cluster{Members: make([]*etcdembed.Server, n)}
	errc := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srv, err := etcdembed.Start(ctx, etcdembed.Config{
				Dir:            filepath.Join(dir, names[i]),
				Name:           names[i],
				ClientURLs:     []string{"unix://" + filepath.Join(dir, names[i]+".sock")},
				PeerURLs:       []string{peers[i]},
				InitialCluster: strings.Join(initial, ","),
				ClusterToken:   token,
				TickMs:         20,
				ElectionMs:     200,
				UnsafeNoFsync:  true,
			})
			c.Members[i] = srv
			errc <- err
		}()
	}
	var firstErr error
	for range n {
		if err := <-errc; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, m := range c.Members {
		if m != nil {
			t.Cleanup(m.Close)
		}
	}
	if firstErr != nil {
		t.Fatalf("etcdtest: cluster: %v", firstErr)
	}
	for _, m := range c.Members {
		c.Endpoints = append(c.Endpoints, m.Endpoints()...)
	}
	return c
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: pick a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
