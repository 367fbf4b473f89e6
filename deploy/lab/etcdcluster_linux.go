//go:build linux

package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The lab's own etcd cluster (`ilalab up --etcd-members 3`): members e1..eN
// of the etcd binary in the control namespace, clients on unix sockets in
// the state dir (so that the NVEs' and the router's namespaces reach them,
// as they reach the embedded etcd's), peers on the control namespace's
// loopback. Authentication is on as with the embedded etcd: `mapsrv
// rbac-init` turns it on with the lab's users, and mapsrv connects as its
// writer user.

// procEtcd names member i's process.
func procEtcd(i int) string { return fmt.Sprintf("etcd-e%d", i) }

// etcdClientURL is where member i serves its clients: a unix socket in
// the state dir. The etcd of Debian 12 (3.4) wants host:port even for
// unix sockets, and makes the socket named so in its working directory
// (the state dir).
func (l *Lab) etcdClientURL(i int) string {
	return "unix://" + filepath.Join(l.dir, etcdSocket(i))
}

func etcdSocket(i int) string { return fmt.Sprintf("etcd-e%d:2379", i) }

func etcdPeerURL(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", 2380+i) }

// planEtcdCluster points the topology at a cluster of n members.
func (l *Lab) planEtcdCluster(t *Topology, n int) {
	t.Etcd.Members = n
	t.Etcd.Endpoints = nil
	for i := 1; i <= n; i++ {
		t.Etcd.Endpoints = append(t.Etcd.Endpoints, l.etcdClientURL(i))
	}
}

// etcdArgs are member i's flags.
func (l *Lab) etcdArgs(i int) []string {
	var cluster []string
	for j := 1; j <= l.topo.Etcd.Members; j++ {
		cluster = append(cluster, fmt.Sprintf("e%d=%s", j, etcdPeerURL(j)))
	}
	return []string{
		"--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(l.dir, "etcd", fmt.Sprintf("e%d", i)),
		"--listen-peer-urls", etcdPeerURL(i), "--initial-advertise-peer-urls", etcdPeerURL(i),
		"--listen-client-urls", "unix://" + etcdSocket(i), "--advertise-client-urls", "unix://" + etcdSocket(i),
		"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-token", l.cfg.Name,
		"--initial-cluster-state", "new", "--log-level", "warn",
		// Signed tokens: etcd's default (simple) tokens live in the
		// members' memory, so after every member restarted the daemons'
		// clients held tokens no member knew, and etcd refused even their
		// new Authenticate calls ("invalid auth token") for good.
		"--auth-token", "jwt,pub-key=" + l.etcdJWTKey(false) + ",priv-key=" + l.etcdJWTKey(true) + ",sign-method=ES256,ttl=10m",
	}
}

// etcdJWTKey is the path of the cluster's token signing key (private) or
// its public key.
func (l *Lab) etcdJWTKey(private bool) string {
	if private {
		return filepath.Join(l.etcdAuthDir(), "jwt.key")
	}
	return filepath.Join(l.etcdAuthDir(), "jwt.pub")
}

// writeEtcdJWTKeys writes an ECDSA P-256 key pair for the members' tokens.
func (l *Lab) writeEtcdJWTKeys() error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("etcd token key: %w", err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("etcd token key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return fmt.Errorf("etcd token key: %w", err)
	}
	if err := os.WriteFile(l.etcdJWTKey(true), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		return fmt.Errorf("etcd token key: %w", err)
	}
	if err := os.WriteFile(l.etcdJWTKey(false), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return fmt.Errorf("etcd token key: %w", err)
	}
	return nil
}

// startEtcdCluster starts the members, waits for a leader and turns
// authentication on (nothing with the embedded etcd).
func (l *Lab) startEtcdCluster(ctx context.Context) error {
	n := l.topo.Etcd.Members
	if n <= 1 {
		return nil
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("%w: etcd (--etcd-members %d runs the etcd binary: apt install etcd-server)", ErrMissing, n)
	}
	if err := os.MkdirAll(filepath.Join(l.dir, "etcd"), 0o700); err != nil {
		return fmt.Errorf("etcd dir: %w", err)
	}
	l.bins["etcd"] = bin
	if err := l.writeEtcdJWTKeys(); err != nil {
		return err
	}
	l.progress("starting an etcd cluster of %d members", n)
	for i := 1; i <= n; i++ {
		if err := l.StartEtcdMember(i); err != nil {
			return err
		}
	}
	if _, err := l.EtcdLeader(ctx, 30*time.Second); err != nil {
		return err
	}
	l.progress("turning etcd authentication on (mapsrv rbac-init)")
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, l.bins[BinMapsrv], "rbac-init", "--etcd-endpoints", strings.Join(l.topo.Etcd.Endpoints, ","),
		"--root-password-file", l.etcdPasswordFile("root"), "--users", filepath.Join(l.etcdAuthDir(), "users"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mapsrv rbac-init: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return l.save()
}

// StartEtcdMember starts member i (1..) of the lab's etcd cluster, again
// after it was killed: it rejoins with its data dir.
func (l *Lab) StartEtcdMember(i int) error {
	ctl, err := l.node(l.topo.Mapsrv.Netns)
	if err != nil {
		return err
	}
	bin := l.bins["etcd"]
	if bin == "" {
		if bin, err = exec.LookPath("etcd"); err != nil {
			return fmt.Errorf("%w: etcd", ErrMissing)
		}
	}
	// A killed member leaves its socket behind.
	if err := os.Remove(filepath.Join(l.dir, etcdSocket(i))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("etcd e%d: %w", i, err)
	}
	_, err = l.start(procEtcd(i), ctl.ns, bin, l.etcdArgs(i)...)
	return err
}

// waitEtcdMember waits until member i answers.
func (l *Lab) waitEtcdMember(ctx context.Context, i int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := l.etcdStatus(ctx, i)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("etcd e%d: not answering after %v: %w (see %s)", i, timeout, err, filepath.Join(l.dir, "logs", procEtcd(i)+".log"))
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// EtcdLeader returns the member (1..) that leads the lab's etcd cluster,
// waiting up to timeout for one.
func (l *Lab) EtcdLeader(ctx context.Context, timeout time.Duration) (int, error) {
	n := l.topo.Etcd.Members
	if n <= 1 {
		return 0, fmt.Errorf("the lab runs mapsrv's embedded etcd, no cluster (ilalab up --etcd-members 3)")
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		for i := 1; i <= n; i++ {
			if leader, err := l.etcdStatus(ctx, i); err != nil {
				last = err
			} else if leader {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("etcd cluster: no leader after %v: %v", timeout, last)
		}
		sleepCtx(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// etcdStatus reports whether member i says it leads.
func (l *Lab) etcdStatus(ctx context.Context, i int) (bool, error) {
	ep := l.etcdClientURL(i)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false, fmt.Errorf("etcd e%d: %w", i, err)
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.Status(sctx, ep)
	if err != nil {
		return false, fmt.Errorf("etcd e%d: %w", i, err)
	}
	return st.Leader != 0 && st.Leader == st.Header.MemberId, nil
}

// mapsrvClusterArgs are the flags of mapsrv replica i (1..) against the
// lab's etcd cluster, with its password in the environment (not on its
// command line).
func (l *Lab) mapsrvClusterArgs(i int) ([]string, []string, error) {
	t := l.topo
	pw, err := os.ReadFile(l.etcdPasswordFile(etcdMapsrv))
	if err != nil {
		return nil, nil, fmt.Errorf("mapsrv's etcd password: %w", err)
	}
	args := []string{"--etcd-endpoints", strings.Join(t.Etcd.Endpoints, ","), "--etcd-user", etcdMapsrv,
		"--data-dir", filepath.Join(l.dir, "mapsrv-data"),
		"--api-addr", netip.AddrPortFrom(ControlAddr, APIPort).String(), "--reg-addr", t.Mapsrv.Registration, "--keys", l.keysPath()}
	if len(t.Mapsrv.Replicas) > 1 {
		r := t.Mapsrv.Replicas[i-1]
		args = []string{"--etcd-endpoints", strings.Join(t.Etcd.Endpoints, ","), "--etcd-user", etcdMapsrv,
			"--data-dir", filepath.Join(l.dir, r.Name+"-data"),
			"--api-addr", netip.AddrPortFrom(ControlAddr, uint16(APIPort+i-1)).String(), "--reg-addr", r.Registration, "--keys", r.KeyFile,
			"--replica-name", r.Name}
	}
	return args, []string{"ETCD_PASSWORD=" + strings.TrimSpace(string(pw))}, nil
}
