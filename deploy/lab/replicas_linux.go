//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// Several mapsrv replicas (`ilalab up --mapsrv-replicas 2`): replica i
// (1..) runs in the control namespace as process mapsrv (i = 1) or
// mapsrv<i>, named mapsrv<i> in the NVEs' liveness records, with its API
// on port APIPort+i-1 and its registration server on RegPort+i-1 of the
// control address, over the lab's etcd cluster. Each signs with a key of
// its own (key id 1 for the first, 1000+i for the others, all owned by
// "mapsrv": the NVEs accept either, and each key id has its own replay
// window at the NVEs, docs/registration.md section 6). Every ilad gets
// every registration address, the first replica's first; the lab's own
// API client moves to the next replica when one refuses connections.

// procMapsrvReplica names replica i's process.
func procMapsrvReplica(i int) string {
	if i == 1 {
		return procMapsrv
	}
	return fmt.Sprintf("%s%d", procMapsrv, i)
}

// replicaKeyID is the key id replica i signs with.
func replicaKeyID(i int) uint32 {
	if i == 1 {
		return 1
	}
	return uint32(1000 + i)
}

// planReplicas lists n replicas in the topology (nothing for one).
func (l *Lab) planReplicas(t *Topology, n int) {
	if n <= 1 {
		return
	}
	for i := 1; i <= n; i++ {
		r := MapsrvReplica{
			Name:         fmt.Sprintf("mapsrv%d", i),
			API:          "https://" + netip.AddrPortFrom(ControlAddr, uint16(APIPort+i-1)).String(),
			Registration: netip.AddrPortFrom(ControlAddr, uint16(RegPort+i-1)).String(),
			KeyFile:      filepath.Join(l.dir, "keys-"+procMapsrvReplica(i)),
		}
		if i == 1 {
			r.KeyFile = l.keysPath()
		}
		t.Mapsrv.Replicas = append(t.Mapsrv.Replicas, r)
	}
}

// replicaKeys makes the signing keys of replicas 2.. : their public keys
// (for the NVEs' files) and their key files (the NVEs' secrets are added
// by the caller), by path.
func (l *Lab) replicaKeys() (map[uint32]regproto.KeyEntry, map[string]regproto.KeyFile, error) {
	pubs := map[uint32]regproto.KeyEntry{}
	files := map[string]regproto.KeyFile{}
	for i := 2; i <= len(l.topo.Mapsrv.Replicas); i++ {
		priv, pub, err := regproto.NewSigningKey("mapsrv")
		if err != nil {
			return nil, nil, fmt.Errorf("registration key of replica %d: %w", i, err)
		}
		pubs[replicaKeyID(i)] = pub
		files[l.topo.Mapsrv.Replicas[i-1].KeyFile] = regproto.KeyFile{replicaKeyID(i): priv}
	}
	return pubs, files, nil
}

// registrationAddrs are the registration addresses ilad gets (-mapsrv).
func (l *Lab) registrationAddrs() string {
	if len(l.topo.Mapsrv.Replicas) <= 1 {
		return l.topo.Mapsrv.Registration
	}
	var out []string
	for _, r := range l.topo.Mapsrv.Replicas {
		out = append(out, r.Registration)
	}
	return strings.Join(out, ",")
}

// startReplica starts (or restarts) replica i >= 2 and waits for its API.
func (l *Lab) startReplica(ctx context.Context, i int) error {
	t := l.topo
	ctl, err := l.node(t.Mapsrv.Netns)
	if err != nil {
		return err
	}
	args, env, err := l.mapsrvClusterArgs(i)
	if err != nil {
		return err
	}
	args = append(args, l.mapsrvTimerArgs()...)
	if t.Mapsrv.TokenFile != "" {
		args = append(args, "--api-token-file", t.Mapsrv.TokenFile)
	}
	if ca := t.Mapsrv.CAFile; ca != "" {
		dir := filepath.Dir(ca)
		args = append(args, "--api-cert", filepath.Join(dir, "server.crt"), "--api-key", filepath.Join(dir, "server.key"))
	}
	l.progress("starting mapsrv replica %s in %s", t.Mapsrv.Replicas[i-1].Name, ctl.name())
	p, err := l.startEnv(procMapsrvReplica(i), ctl.ns, env, l.bins[BinMapsrv], args...)
	if err != nil {
		return err
	}
	t.Mapsrv.Replicas[i-1].PID = p.PID
	return l.waitReplicaAPI(ctx, i, 30*time.Second)
}

// StartMapsrvReplica starts replica i (1..) again after a kill.
func (l *Lab) StartMapsrvReplica(ctx context.Context, i int) error {
	if i < 1 || i > max(1, len(l.topo.Mapsrv.Replicas)) {
		return fmt.Errorf("mapsrv replica %d: the lab has %d", i, max(1, len(l.topo.Mapsrv.Replicas)))
	}
	var err error
	if i == 1 {
		err = l.startMapsrv(ctx)
	} else {
		err = l.startReplica(ctx, i)
	}
	if err != nil {
		return err
	}
	return l.save()
}

// waitReplicaAPI waits until replica i answers on its own API (not
// through the lab's client, which would take any replica's answer).
func (l *Lab) waitReplicaAPI(ctx context.Context, i int, timeout time.Duration) error {
	hc, err := l.ctlHTTP()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	tok, err := l.apiToken()
	if err != nil {
		return err
	}
	url := l.topo.Mapsrv.Replicas[i-1].API
	c, err := apiclient.New(apiclient.Config{URL: url, Token: tok, HTTPClient: hc, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	proc := procMapsrvReplica(i)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p := l.procs[proc]; p != nil && p.exited() {
			return fmt.Errorf("%s exited during start; see %s", proc, p.Log)
		}
		if _, last = c.Domains(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("mapsrv replica %d API %s: not answering after %v: %v (log %s)", i, url, timeout, last, filepath.Join(l.dir, "logs", proc+".log"))
}

// ReplicaOf returns the replica (1..) that decides for NVE nve: the one
// its liveness record names, i.e. the one its ilad speaks to.
func (l *Lab) ReplicaOf(ctx context.Context, nve string) (int, string, error) {
	c, err := l.api()
	if err != nil {
		return 0, "", err
	}
	rec, err := c.NVE(ctx, nve)
	if err != nil {
		return 0, "", fmt.Errorf("nve %s: %w", nve, err)
	}
	if rec.Liveness == nil || rec.Liveness.Replica == "" {
		return 0, "", fmt.Errorf("nve %s: no replica in its liveness record (no heartbeat yet?)", nve)
	}
	for i, r := range l.topo.Mapsrv.Replicas {
		if r.Name == rec.Liveness.Replica {
			return i + 1, r.Name, nil
		}
	}
	return 0, rec.Liveness.Replica, fmt.Errorf("nve %s: replica %q is not one of the lab's", nve, rec.Liveness.Replica)
}

// livenessOf returns nve's liveness as the store has it.
func (l *Lab) livenessOf(ctx context.Context, nve string) (mapsrv.NVELiveness, error) {
	c, err := l.api()
	if err != nil {
		return mapsrv.NVELiveness{}, err
	}
	rec, err := c.NVE(ctx, nve)
	if err != nil {
		return mapsrv.NVELiveness{}, fmt.Errorf("nve %s: %w", nve, err)
	}
	if rec.Liveness == nil {
		return mapsrv.NVELiveness{}, fmt.Errorf("nve %s: no liveness record (no heartbeat yet?)", nve)
	}
	return *rec.Liveness, nil
}

// replicaTransport sends each API request to the replica that answered
// last, and to the next one when a replica refuses the connection (a
// killed mapsrv: nothing of the request was sent, so even a move is safe
// to send again).
type replicaTransport struct {
	base  http.RoundTripper
	hosts []string // host:port of each replica's API
	cur   atomic.Int32
}

func (l *Lab) replicaTransport(base http.RoundTripper) *replicaTransport {
	t := &replicaTransport{base: base}
	for _, r := range l.topo.Mapsrv.Replicas {
		t.hosts = append(t.hosts, strings.TrimPrefix(strings.TrimPrefix(r.API, "https://"), "http://"))
	}
	return t
}

func (t *replicaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := int(t.cur.Load())
	var last error
	for k := range t.hosts {
		i := (start + k) % len(t.hosts)
		r := req.Clone(req.Context())
		r.URL.Host, r.Host = t.hosts[i], ""
		if k > 0 && req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, last
			}
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = b
		}
		resp, err := t.base.RoundTrip(r)
		if err == nil {
			t.cur.Store(int32(i))
			return resp, nil
		}
		last = err
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return nil, err
		}
	}
	return nil, last
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// base transport.
func (t *replicaTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
