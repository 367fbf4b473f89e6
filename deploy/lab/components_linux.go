//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/selfca"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// Process names (pid files, logs).
const (
	procMapsrv = "mapsrv"
	procDNS    = "dnsbridge"
	procRouter = "router"
)

func procIlad(nve string) string { return "ilad-" + nve }

func (l *Lab) keysPath() string { return filepath.Join(l.dir, "keys") }

// nveKeysPath is the keys file of one NVE's ilad: its own key and mapsrv's
// public key.
func (l *Lab) nveKeysPath(nve string) string { return filepath.Join(l.dir, "keys-"+nve) }
func (l *Lab) pinRoot() string               { return filepath.Join("/sys/fs/bpf", l.cfg.Name) }
func (l *Lab) iladSock(nve string) string {
	return filepath.Join(l.dir, "ilad-"+nve+".sock")
}
func (l *Lab) eventsPath(who string) string { return filepath.Join(l.dir, "events-"+who+".jsonl") }

// etcd users of the lab (least privilege: mapsrv writes /ila/, the others
// only read it).
const (
	etcdMapsrv    = "mapsrv"
	etcdIlad      = "ilad"
	etcdDNSBridge = "dnsbridge"
	etcdOperator  = "operator"
)

// etcdAuthDir holds the etcd users file, the root password and one
// password file per user.
func (l *Lab) etcdAuthDir() string { return filepath.Join(l.dir, "etcd-auth") }

func (l *Lab) etcdPasswordFile(user string) string {
	return filepath.Join(l.etcdAuthDir(), user+".password")
}

// writeEtcdUsers writes the files of the etcd's authentication: mapsrv
// turns it on at start (--etcd-rbac-users).
func (l *Lab) writeEtcdUsers() error {
	if err := os.MkdirAll(l.etcdAuthDir(), 0o700); err != nil {
		return fmt.Errorf("etcd users: %w", err)
	}
	pw := func() (string, error) {
		var b [18]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("etcd users: %w", err)
		}
		return hex.EncodeToString(b[:]), nil
	}
	var users strings.Builder
	users.WriteString("# <name> <role> <password>  (written by ilalab)\n")
	for _, u := range []struct{ name, role string }{
		{"root", ""}, {etcdMapsrv, etcdstore.RoleWriter}, {etcdIlad, etcdstore.RoleReader},
		{etcdDNSBridge, etcdstore.RoleReader}, {etcdOperator, etcdstore.RoleReader},
	} {
		p, err := pw()
		if err != nil {
			return err
		}
		if err := os.WriteFile(l.etcdPasswordFile(u.name), []byte(p+"\n"), 0o600); err != nil {
			return fmt.Errorf("etcd users: %w", err)
		}
		if u.role != "" {
			fmt.Fprintf(&users, "%s %s %s\n", u.name, u.role, p)
		}
	}
	if err := os.WriteFile(filepath.Join(l.etcdAuthDir(), "users"), []byte(users.String()), 0o600); err != nil {
		return fmt.Errorf("etcd users: %w", err)
	}
	return nil
}

// writeKeys writes the registration keys (regproto's keys file format):
// key 1 is mapsrv's Ed25519 key, key n+1 the HMAC secret of NVE n. mapsrv's
// file (keys) holds its private key and every NVE's secret; the file of
// NVE n (keys-<nve>) holds only its own secret and mapsrv's public key, so
// that no NVE can forge mapsrv's notifications or another NVE's requests.
func (l *Lab) writeKeys() error {
	priv, pub, err := regproto.NewSigningKey("mapsrv")
	if err != nil {
		return fmt.Errorf("registration key: %w", err)
	}
	all := regproto.KeyFile{1: priv}
	// Further replicas sign with keys of their own (replicaKeys).
	pubs, replicaFiles, err := l.replicaKeys()
	if err != nil {
		return err
	}
	pubs[1] = pub
	for i, n := range l.topo.NVEs {
		s, err := regproto.NewSecret()
		if err != nil {
			return fmt.Errorf("registration key: %w", err)
		}
		id := uint32(i + 2)
		all[id] = regproto.KeyEntry{NVE: n.Name, Secret: s}
		for _, f := range replicaFiles {
			f[id] = all[id]
		}
		own := regproto.KeyFile{id: all[id]}
		for k, p := range pubs {
			own[k] = p
		}
		if err := os.WriteFile(l.nveKeysPath(n.Name), own.Format(), 0o600); err != nil {
			return fmt.Errorf("registration keys: %w", err)
		}
	}
	if err := os.WriteFile(l.keysPath(), all.Format(), 0o600); err != nil {
		return fmt.Errorf("registration keys: %w", err)
	}
	for path, f := range replicaFiles {
		if err := os.WriteFile(path, f.Format(), 0o600); err != nil {
			return fmt.Errorf("registration keys: %w", err)
		}
	}
	// The management API listens on the control network: it wants a token.
	// mapsrv's file holds the admin token and a read-only one; the
	// read-only one also gets a file of its own for operators who only look.
	var tok, ro [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	if _, err := rand.Read(ro[:]); err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	roLine := mapsrv.RoleReadOnly + " " + hex.EncodeToString(ro[:]) + "\n"
	if err := os.WriteFile(l.topo.Mapsrv.TokenFile, []byte("# mapsrv management API tokens (written by ilalab)\n"+hex.EncodeToString(tok[:])+"\n"+roLine), 0o600); err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	if ca := l.topo.Mapsrv.CAFile; ca != "" {
		// TLS for the management API: a private CA whose key is not
		// kept, and mapsrv's certificate for the control address.
		dir := filepath.Dir(ca)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("api tls: %w", err)
		}
		if _, err := selfca.Write(dir, []netip.Addr{ControlAddr}, []string{"mapsrv"}, 365*24*time.Hour); err != nil {
			return fmt.Errorf("api tls: %w", err)
		}
	}
	if l.topo.Mapsrv.ReadOnlyTokenFile != "" {
		if err := os.WriteFile(l.topo.Mapsrv.ReadOnlyTokenFile, []byte("# read-only mapsrv API token (written by ilalab)\n"+roLine), 0o600); err != nil {
			return fmt.Errorf("api token: %w", err)
		}
	}
	return nil
}

// apiToken is the lab's management API token.
func (l *Lab) apiToken() (string, error) {
	if l.topo.Mapsrv.TokenFile == "" {
		return "", nil // a lab from before tokens
	}
	toks, err := mapsrv.ReadTokenFile(l.topo.Mapsrv.TokenFile)
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// ensureBPFFS mounts a bpffs on /sys/fs/bpf if none is there.
func ensureBPFFS() error {
	if out, err := exec.Command("mountpoint", "-q", "/sys/fs/bpf").CombinedOutput(); err == nil {
		return nil
	} else if len(out) > 0 {
		_ = out
	}
	if err := os.MkdirAll("/sys/fs/bpf", 0o755); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", "/sys/fs/bpf").CombinedOutput(); err != nil {
		return fmt.Errorf("mount bpffs on /sys/fs/bpf: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// startControl starts mapsrv (embedded etcd) and dnsbridge in the control
// namespace and declares the domain and the NVEs.
func (l *Lab) startControl(ctx context.Context) error {
	t := l.topo
	ctl, err := l.node(t.Mapsrv.Netns)
	if err != nil {
		return err
	}
	if err := l.writeEtcdUsers(); err != nil {
		return err
	}
	if err := l.writeKeys(); err != nil {
		return err
	}
	if err := ensureBPFFS(); err != nil {
		return err
	}
	if err := l.startEtcdCluster(ctx); err != nil {
		return err
	}
	if err := l.startMapsrv(ctx); err != nil {
		return err
	}
	for i := 2; i <= len(t.Mapsrv.Replicas); i++ {
		if err := l.startReplica(ctx, i); err != nil {
			return err
		}
	}
	l.progress("declaring domain %s (%s) and %d NVEs", Domain, SIRPrefix, len(t.NVEs))
	if _, err := l.ilactl(ctx, "domain", "add", Domain, "--sir-prefix", SIRPrefix.String(), "--csum", "neutral-map"); err != nil {
		return err
	}
	for _, n := range t.NVEs {
		// --reg-addr: where mapsrv sends the NVE its signed move
		// notifications (ilad's --notify-listen, below).
		if _, err := l.ilactl(ctx, "nve", "add", n.Name, "--locator", n.Locator.String(), "--underlay", n.Underlay.String(),
			"--reg-addr", netip.AddrPortFrom(n.Underlay, notifyPort).String()); err != nil {
			return err
		}
	}
	l.progress("starting dnsbridge on %s", t.DNS.Addr)
	if _, err := l.start(procDNS, ctl.ns, l.bins[BinDNSBridge],
		append(l.etcdAuth(etcdDNSBridge, "--etcd-user", "--etcd-password-file"), dnsbridgeArgs(t.Etcd.Endpoints, t.DNS.Addr)...)...); err != nil {
		return err
	}
	if err := l.startRouters(ctx); err != nil {
		return err
	}
	return l.save()
}

// startMapsrv starts (or restarts) mapsrv in the control namespace and
// waits for its API.
func (l *Lab) startMapsrv(ctx context.Context) error {
	t := l.topo
	ctl, err := l.node(t.Mapsrv.Netns)
	if err != nil {
		return err
	}
	etcdDir := filepath.Join(l.dir, "etcd")
	args := mapsrvArgs(etcdDir, t.Etcd.Endpoints[0], netip.AddrPortFrom(ControlAddr, APIPort).String(), t.Mapsrv.Registration, l.keysPath())
	var env []string
	if t.Etcd.Members > 1 {
		l.progress("starting mapsrv (etcd cluster of %d) in %s", t.Etcd.Members, ctl.name())
		var err error
		if args, env, err = l.mapsrvClusterArgs(1); err != nil {
			return err
		}
	} else {
		l.progress("starting mapsrv (embedded etcd) in %s", ctl.name())
		if t.Etcd.ReadOnlyUser != "" {
			args = append(args, "--etcd-rbac-users", filepath.Join(l.etcdAuthDir(), "users"), "--etcd-root-password-file", l.etcdPasswordFile("root"))
		}
	}
	args = append(args, l.mapsrvTimerArgs()...)
	if t.Mapsrv.TokenFile != "" {
		args = append(args, "--api-token-file", t.Mapsrv.TokenFile)
	}
	if ca := t.Mapsrv.CAFile; ca != "" {
		dir := filepath.Dir(ca)
		args = append(args, "--api-cert", filepath.Join(dir, "server.crt"), "--api-key", filepath.Join(dir, "server.key"))
	}
	p, err := l.startEnv(procMapsrv, ctl.ns, env, l.bins[BinMapsrv], args...)
	if err != nil {
		return err
	}
	t.Mapsrv.PID = p.PID
	if len(t.Mapsrv.Replicas) > 1 {
		t.Mapsrv.Replicas[0].PID = p.PID
		return l.waitReplicaAPI(ctx, 1, 30*time.Second)
	}
	return l.waitAPI(ctx, 30*time.Second)
}

// mapsrvArgs are mapsrv's flags for the lab.
func mapsrvArgs(dataDir, clientURL, api, reg, keys string) []string {
	return []string{"--data-dir", dataDir, "--etcd-client-url", clientURL, "--api-addr", api, "--reg-addr", reg, "--keys", keys}
}

// inCtl runs a command inside the control namespace and returns its output.
func (l *Lab) inNS(ctx context.Context, nsName, bin string, args ...string) ([]byte, error) {
	n, err := l.node(nsName)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := n.ns.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	if err := cmd.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// notifyPort is where each NVE's ilad listens for mapsrv's move
// notifications, on its underlay address.
const notifyPort = 7481

// routerMetrics is where the ILA router serves its metrics, inside the
// fabric namespace.
const routerMetrics = "[::1]:9464"

// nveMetrics is where each NVE's ilad serves its metrics, inside the NVE's
// namespace.
const nveMetrics = "[::1]:9465"

// ilactl runs ilactl against the lab's mapsrv API (inside the control
// namespace, where the API listens).
func (l *Lab) ilactl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	flags := []string{"--api", l.topo.Mapsrv.API}
	if l.topo.Mapsrv.CAFile != "" {
		flags = append(flags, "--ca-file", l.topo.Mapsrv.CAFile)
	}
	if l.topo.Mapsrv.TokenFile != "" {
		flags = append(flags, "--token-file", l.topo.Mapsrv.TokenFile)
	}
	return l.inNS(ctx, l.topo.Mapsrv.Netns, l.bins[BinIlactl], append(flags, args...)...)
}

// api returns a client of mapsrv's API whose connections are opened inside
// the control namespace, with the lab's token.
func (l *Lab) api() (*apiclient.Client, error) {
	if l.apiC != nil {
		return l.apiC, nil
	}
	hc, err := l.ctlHTTP()
	if err != nil {
		return nil, err
	}
	tok, err := l.apiToken()
	if err != nil {
		return nil, err
	}
	if len(l.topo.Mapsrv.Replicas) > 1 {
		// Every replica serves the API: a killed one's calls go to the next.
		hc.Transport = l.replicaTransport(hc.Transport)
	}
	c, err := apiclient.New(apiclient.Config{URL: l.topo.Mapsrv.API, Token: tok, HTTPClient: hc, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	l.apiC, l.apiHC = c, hc
	return c, nil
}

// ctlHTTP is an HTTP client that dials from the control namespace.
func (l *Lab) ctlHTTP() (*http.Client, error) {
	n, err := l.node(l.topo.Mapsrv.Netns)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	if ca := l.topo.Mapsrv.CAFile; ca != "" {
		if tr.TLSClientConfig, err = apiclient.TLSConfig(ca); err != nil {
			return nil, err
		}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// waitAPI waits until mapsrv answers on its API.
func (l *Lab) waitAPI(ctx context.Context, timeout time.Duration) error {
	c, err := l.api()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p := l.procs[procMapsrv]; p != nil && p.exited() {
			return fmt.Errorf("mapsrv exited during start; see %s", p.Log)
		}
		_, err := c.Domains(ctx)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("mapsrv API %s: not answering after %v: %v (log %s)", l.topo.Mapsrv.API, timeout, last, l.procs[procMapsrv].Log)
}

// routerPorts are the fabric's ports the ILA router takes traffic on: the
// links to the control namespace and to every NVE.
func (l *Lab) routerPorts() []string {
	ports := []string{"ctl"}
	for _, n := range l.topo.NVEs {
		if l.dcIndex(n.DC) != 1 {
			continue // another DC's router takes those (dcRouters)
		}
		ports = append(ports, n.Name)
	}
	return ports
}

// routerArgs are the flags of the fabric's ILA router: ilad in the router
// role, as deploy/config/ila-router.json sets it up on a real router.
func (l *Lab) routerArgs() []string {
	t := l.topo
	args := append(l.etcdAuth(etcdIlad, "--etcd-user", "--etcd-password-file"),
		"--role", "router",
		"--node", "router",
		"--ports", strings.Join(l.routerPorts(), ","),
		"--netns", filepath.Join("/var/run/netns", t.FabricNetns),
		"--etcd", strings.Join(t.Etcd.Endpoints, ","),
		"--bpffs", t.Router.PinPath,
		"--metrics", routerMetrics,
		"--api", l.iladSock("router"), // read-only: ilactl where
		"--events", l.eventsPath("router"),
		"--log-format", "json",
	)
	return append(args, l.routerBGPArgs(1)...)
}

// etcdAuth returns the user and password file flags of user when the
// lab's etcd has authentication on.
func (l *Lab) etcdAuth(user, userFlag, fileFlag string) []string {
	if l.topo.Etcd.ReadOnlyUser == "" {
		return nil
	}
	return []string{userFlag, user, fileFlag, l.etcdPasswordFile(user)}
}

// iladArgs are ilad's flags for NVE n.
func (l *Lab) iladArgs(n *NVE) []string {
	t := l.topo
	args := []string{
		"--node", n.Name,
		"--locator", Domain + "=" + n.Locator.String(),
		"--uplink", "up0",
		"--mapsrv", l.registrationAddrs(),
		"--key-file", l.nveKeysPath(n.Name),
		"--key-id", strconv.Itoa(n.Index + 1),
		"--notify-listen", netip.AddrPortFrom(n.Underlay, notifyPort).String(),
		"--etcd", strings.Join(t.Etcd.Endpoints, ","),
		"--bpffs", filepath.Join(l.pinRoot(), n.Name),
		"--api", l.iladSock(n.Name),
		"--netns", filepath.Join("/var/run/netns", n.Netns),
		"--state-file", filepath.Join(l.dir, "ilad-"+n.Name+".tasks.json"),
		"--log-format", "json",
		"--log-level", "debug",
		"--metrics", nveMetrics,
	}
	args = append(args, l.iladTimerArgs()...)
	if l.cfg.IPv4Tenant {
		args = append(args, "--underlay", n.Underlay.String())
	}
	args = append(args, l.etcdAuth(etcdIlad, "--etcd-user", "--etcd-password-file")...)
	return append(args, l.bgpArgs(n)...)
}

// startNVEs starts ilad in every NVE namespace.
func (l *Lab) startNVEs(ctx context.Context) error {
	for i := range l.topo.NVEs {
		n := &l.topo.NVEs[i]
		if err := l.startIlad(ctx, n); err != nil {
			return err
		}
	}
	return l.save()
}

// startIlad starts (or restarts) ilad on one NVE and waits for its API.
func (l *Lab) startIlad(ctx context.Context, n *NVE) error {
	nn, err := l.node(n.Netns)
	if err != nil {
		return err
	}
	l.progress("starting ilad on %s (locator %s)", n.Name, n.Locator)
	_ = os.Remove(l.iladSock(n.Name))
	p, err := l.start(procIlad(n.Name), nn.ns, l.bins[BinIlad], l.iladArgs(n)...)
	if err != nil {
		return err
	}
	n.PID = p.PID
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := locator.NewClient(l.iladSock(n.Name))
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = c.Tasks(cctx)
			cancel()
			if err == nil {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("ilad on %s exited during start; see %s", n.Name, p.Log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ilad on %s: API %s not answering after 20s: %v (log %s)", n.Name, l.iladSock(n.Name), err, p.Log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// spec is the ilad task spec of a lab task.
func (task *Task) spec() locator.TaskSpec {
	mac, _ := ila.ParseMAC(task.MAC)
	s := locator.TaskSpec{Name: task.Name, Tenant: task.Tenant, Iface: task.Ifname, SIR: task.SIR, MAC: mac}
	if task.IPv4.IsValid() {
		s.IPv4, s.VNI = task.IPv4, IPv4VNI
	}
	return s
}

// attachTask asks the ilad of nve to attach (and register) task.
func (l *Lab) attachTask(ctx context.Context, task *Task, nve string) error {
	c, err := locator.NewClient(l.iladSock(nve))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.Attach(ctx, task.spec())
	if err != nil {
		return fmt.Errorf("attach %s on %s: %w", task.Name, nve, err)
	}
	if !st.Registered {
		return fmt.Errorf("attach %s on %s: not registered (%s)", task.Name, nve, st.Error)
	}
	return nil
}

// attachStandby asks the ilad of nve to prepare task's port and local
// delivery without registering it (the first half of a make-before-break
// move; attachTask then commits it).
func (l *Lab) attachStandby(ctx context.Context, task *Task, nve string) error {
	c, err := locator.NewClient(l.iladSock(nve))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	spec := task.spec()
	spec.Standby = true
	if _, err := c.Attach(ctx, spec); err != nil {
		return fmt.Errorf("attach %s on %s (standby): %w", task.Name, nve, err)
	}
	return nil
}

// attachTasks attaches every task to its NVE's ilad, then waits for its
// router advertisement (default route) and for the mapping to be visible.
func (l *Lab) attachTasks(ctx context.Context) error {
	for i := range l.topo.Tasks {
		task := &l.topo.Tasks[i]
		if task.VM != nil {
			continue // attached once its QEMU runs (startVMs)
		}
		l.progress("attaching %s (%s) on %s", task.Name, task.addr(), task.NVE)
		if err := l.attachTask(ctx, task, task.NVE); err != nil {
			return err
		}
	}
	for i := range l.topo.Tasks {
		task := &l.topo.Tasks[i]
		if task.VM != nil {
			continue
		}
		if task.IPv4.IsValid() {
			// A booting VM announces itself; the NVE's IPv4 layer learns
			// the port of a local task from it (a silent local task has no
			// FDB entry until it speaks).
			l.progress("gratuitous ARP from %s", task.Name)
			if err := l.SendGARP(task.Name); err != nil {
				return err
			}
			continue
		}
		l.progress("waiting for %s's router advertisement", task.Name)
		if err := l.waitDefaultRoute(ctx, task, 10*time.Second); err != nil {
			return err
		}
	}
	l.topo.Components = []string{"mapsrv", "etcd (embedded)", "dnsbridge", "ilad", "ila-router"}
	return nil
}

func (task *Task) addr() string {
	if task.IPv4.IsValid() {
		return task.IPv4.String()
	}
	return task.SIR.String()
}

// waitDefaultRoute waits for the task's default route learnt from the
// NVE's router advertisements.
func (l *Lab) waitDefaultRoute(ctx context.Context, task *Task, timeout time.Duration) error {
	tn, err := l.node(task.Netns)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		routes, err := tn.h.RouteList(nil, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("routes of %s: %w", task.Name, err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask != nil {
				if ones, _ := maskOnes(r.Dst); ones == 0 && r.Gw != nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %s: no default route from a router advertisement after %v", task.Name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func maskOnes(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 128
	}
	return n.Mask.Size()
}

// expectMove tells mapsrv that task is about to move to the NVE to (POST
// /v1/tasks/{tenant}/{name}/expect with the lab's admin token): the lab is
// the orchestrator, and its word is what justifies to's claim of the task
// from the port prepared there (mapsrv's default --standby-claims=expected,
// docs/registration.md section 7.4). Every move that commits by a claim at
// the destination (dual, carry, a VM's live migration) asks first; a move
// that fails before its commit calls the returned drop (best effort: the
// expectation also lapses after ttl).
func (l *Lab) expectMove(ctx context.Context, task *Task, to *NVE, ttl time.Duration) (drop func(), err error) {
	if l.cfg.UnderlayOnly {
		return func() {}, nil
	}
	c, err := l.api()
	if err != nil {
		return nil, err
	}
	if _, err := c.Expect(ctx, task.Tenant, task.Name, mapsrv.ExpectBody{NVE: to.Name, TTL: ila.Duration(ttl)}); err != nil {
		return nil, fmt.Errorf("expect %s on %s: %w", task.Name, to.Name, err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		_ = c.Unexpect(dctx, task.Tenant, task.Name)
	}, nil
}

// apiMove asks mapsrv to move task to the NVE to (POST
// /v1/tasks/{tenant}/{name}/move) and returns the commit time mapsrv
// recorded.
func (l *Lab) apiMove(ctx context.Context, task *Task, to *NVE, mode string) (time.Time, error) {
	m, err := ila.ParseMoveMode(mode)
	if err != nil {
		return time.Time{}, err
	}
	c, err := l.api()
	if err != nil {
		return time.Time{}, err
	}
	rec, err := c.Move(ctx, task.Tenant, task.Name, mapsrv.MoveBody{To: to.Name, Mode: m})
	if err != nil {
		return time.Now(), fmt.Errorf("move %s to %s: %w", task.Name, to.Name, err)
	}
	if rec.Updated.IsZero() {
		return time.Now(), nil
	}
	return rec.Updated, nil
}
