// Package etcdembed runs an embedded etcd server (go.etcd.io/etcd/server/v3/embed).
//
// It is the only package of the project that imports the etcd server module:
// mapsrv uses it for its single-machine default, and tests use it through
// package etcdtest.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config describes one embedded etcd member. The zero value of every field
// except Dir has a usable default.
type Config struct {
	// Dir is the data directory (required). It is created if missing; a
	// directory holding a previous member's data restarts that member.
	Dir string
	// Name is the member name. Default "default".
	Name string
	// ClientURLs are the URLs the member serves clients on, e.g.
	// "unix:///run/ila/etcd.sock" or "http://127.0.0.1:2379".
	// Default: "unix://" + Dir + "/etcd.sock".
	ClientURLs []string
	// PeerURLs are the URLs the member serves peers on. Default:
	// "unix://" + Dir + "/peer.sock", which is fine for a single member
	// (peers never dial it). Multi-member clusters need http URLs.
	PeerURLs []string
	// InitialCluster is "name=peerURL,name2=peerURL2,...". Default: this
	// member alone.
	InitialCluster string
	// ClusterToken is the initial cluster token. Default "ila".
	ClusterToken string
	// Existing joins an existing cluster instead of bootstrapping a new one.
	Existing bool
	// TickMs and ElectionMs are the raft heartbeat and election timeouts in
	// milliseconds. Defaults 100 and 1000 (etcd's).
	TickMs, ElectionMs uint
	// UnsafeNoFsync disables fsync (tests and benchmarks only).
	UnsafeNoFsync bool
	// StartTimeout bounds the wait for the member to be ready. Default 60s.
	StartTimeout time.Duration
	// Logger receives etcd's logs. Default: none (zap.NewNop()).
	Logger *zap.Logger
	// ServerCert and ServerKey (PEM files) make the client URLs https;
	// ClientCA then makes the member demand client certificates signed by
	// it (etcd's client-cert-auth).
	ServerCert, ServerKey, ClientCA string
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("etcd config: data dir is required")
	}
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("etcd config: data dir %q: %w", c.Dir, err)
	}
	c.Dir = abs
	if c.Name == "" {
		c.Name = "default"
	}
	if len(c.ClientURLs) == 0 {
		c.ClientURLs = []string{"unix://" + filepath.Join(c.Dir, "etcd.sock")}
	}
	if len(c.PeerURLs) == 0 {
		c.PeerURLs = []string{"unix://" + filepath.Join(c.Dir, "peer.sock")}
	}
	if c.InitialCluster == "" {
		parts := make([]string, len(c.PeerURLs))
		for i, u := range c.PeerURLs {
			parts[i] = c.Name + "=" + u
		}
		c.InitialCluster = strings.Join(parts, ",")
	}
	if c.ClusterToken == "" {
		c.ClusterToken = "ila"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	for _, u := range append(append([]string(nil), c.ClientURLs...), c.PeerURLs...) {
		pu, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("etcd config: url %q: %w", u, err)
		}
		if pu.Scheme == "unix" || pu.Scheme == "unixs" {
			if p := pu.Host + pu.Path; len(p) > 104 {
				return fmt.Errorf("etcd config: unix socket path %q is longer than 104 bytes", p)
			}
		}
	}
	return nil
}

func parseURLs(ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("parse url %q: %w", s, err)
		}
		out = append(out, *u)
	}
	return out, nil
}

// Server is a running embedded etcd member.
type Server struct {
	e         *embed.Etcd
	endpoints []string
	name      string
	closeOnce sync.Once
}

// Start starts a member and waits until it is ready to serve clients (or
// ctx is done, or the start timeout passes).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	var err error
	if ec.ListenClientUrls, err = parseURLs(cfg.ClientURLs); err != nil {
		return nil, err
	}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	if ec.ListenPeerUrls, err = parseURLs(cfg.PeerURLs); err != nil {
		return nil, err
	}
	ec.AdvertisePeerUrls = ec.ListenPeerUrls
	ec.InitialCluster = cfg.InitialCluster
	ec.InitialClusterToken = cfg.ClusterToken
	if cfg.Existing {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if cfg.TickMs > 0 {
		ec.TickMs = cfg.TickMs
	}
	if cfg.ElectionMs > 0 {
		ec.ElectionMs = cfg.ElectionMs
	}
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	if cfg.ServerCert != "" {
		ec.ClientTLSInfo = transport.TLSInfo{CertFile: cfg.ServerCert, KeyFile: cfg.ServerKey, TrustedCAFile: cfg.ClientCA, ClientCertAuth: cfg.ClientCA != ""}
	}
	ec.Logger = "zap"
	ec.LogOutputs = []string{"/dev/null"}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	ec.Metrics = "basic"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd %s in %s: %w", cfg.Name, cfg.Dir, err)
	}
	t := time.NewTimer(cfg.StartTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd %s: %w", cfg.Name, err)
	case <-t.C:
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd %s: not ready after %s", cfg.Name, cfg.StartTimeout)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd %s: %w", cfg.Name, ctx.Err())
	}
	s := &Server{e: e, name: cfg.Name}
	for _, l := range e.Clients {
		addr := l.Addr()
		switch {
		case addr.Network() == "unix":
			s.endpoints = append(s.endpoints, "unix://"+addr.String())
		case cfg.ServerCert != "":
			s.endpoints = append(s.endpoints, "https://"+addr.String())
		default:
			s.endpoints = append(s.endpoints, "http://"+addr.String())
		}
	}
	return s, nil
}

// Endpoints returns the client endpoints, in a form clientv3 and etcdctl
// accept ("unix:///abs/path" or "http://host:port").
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Name is the member name.
func (s *Server) Name() string { return s.name }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.e.Err() }

// Close stops the member and releases its listeners and data directory
// lock. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(s.e.Close)
}
