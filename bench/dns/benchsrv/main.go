// benchsrv runs one side of the DNS benchmark in bench/dns/run.sh:
//
//	-mode bridge   embedded etcd (TCP client URL, so CoreDNS can share it),
//	               the mapping service registering -tasks tasks, the DNS
//	               bridge fed by the etcd watcher; writes the dnsperf query
//	               file and, with -skydns, the same names in CoreDNS's etcd
//	               plugin layout (/skydns/...).
//	-mode trivial  a miekg/dns server answering every query with one fixed
//	               AAAA record: the ceiling for a Go DNS server.
//
// When ready it writes shell assignments (PORT=..., ETCD_URL=...) to -ready
// and serves until SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchsrv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	mode := flag.String("mode", "bridge", "bridge or trivial")
	listen := flag.String("listen", "127.0.0.1:0", "DNS address (UDP and TCP)")
	ready := flag.String("ready", "", "file to write the shell assignments to when ready")
	tasks := flag.Int("tasks", 1000, "tasks to register (bridge)")
	dir := flag.String("etcd-dir", "", "etcd data directory (bridge)")
	queries := flag.String("queries", "", "dnsperf query file to write (bridge)")
	skydns := flag.Bool("skydns", false, "also write the names in CoreDNS's etcd layout (bridge)")
	flag.Parse()

	switch *mode {
	case "trivial":
		return trivial(ctx, *listen, *ready)
	case "bridge":
		return bridge(ctx, *listen, *ready, *dir, *queries, *tasks, *skydns)
	}
	return fmt.Errorf("mode %q: want bridge or trivial", *mode)
}

func writeReady(path string, kv ...string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(kv, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func trivial(ctx context.Context, listen, ready string) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	fixed := net.ParseIP("2001:db8:1::1001")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) == 1 {
			m.Answer = []dns.RR{&dns.AAAA{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 5}, AAAA: fixed}}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-started:
	}
	if err := writeReady(ready, fmt.Sprintf("PORT=%d", pc.LocalAddr().(*net.UDPAddr).Port)); err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Shutdown()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func bridge(ctx context.Context, listen, ready, dir, queries string, n int, skydns bool) error {
	if dir == "" {
		return fmt.Errorf("-etcd-dir is required")
	}
	cport, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", cport)
	e, err := etcdembed.Start(ctx, etcdembed.Config{Dir: dir, ClientURLs: []string{etcdURL}, UnsafeNoFsync: true})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()

	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		return err
	}
	dom := ila.Domain{Name: "dc1", SIR: ila.SIRPrefix(0x2001_0db8_0001_0000), Csum: ila.CsumNeutralMap}
	if err := svc.AddDomain(ctx, dom); err != nil {
		return err
	}
	locs := []ila.Locator{0xfd00_0000_0000_000a, 0xfd00_0000_0000_000b}
	for i, loc := range locs {
		nve := mapsrv.NVERecord{NVE: ila.NVE{Name: fmt.Sprintf("nve%d", i+1), Locators: []ila.Locator{loc}, Underlay: netip.MustParseAddr(fmt.Sprintf("2001:db8:ff::%d", i+1))}}
		if err := svc.AddNVE(ctx, nve); err != nil {
			return err
		}
	}
	var q strings.Builder
	start := time.Now()
	for i := range n {
		sir := dom.SIR.Addr(ila.Identifier(0x10000 + i + 1))
		rec, err := svc.Register(ctx, mapsrv.Registration{NVE: fmt.Sprintf("nve%d", i%2+1), Tenant: "blue", Name: fmt.Sprintf("web-%d", i), SIR: sir})
		if err != nil {
			return fmt.Errorf("register task %d: %w", i, err)
		}
		name := fmt.Sprintf("web-%d.blue.ila.internal.", i)
		idName := rec.Identifier.Hex() + ".id.ila.internal."
		fmt.Fprintf(&q, "%s AAAA\n%s AAAA\n", name, idName)
		if skydns {
			a, err := rec.Mapping(dom).ILAAddr()
			if err != nil {
				return err
			}
			for _, kv := range [][2]string{{name, sir.String()}, {idName, a.String()}} {
				v, _ := json.Marshal(map[string]any{"host": kv[1], "ttl": 5})
				if _, err := cli.Put(ctx, skydnsKey(kv[0]), string(v)); err != nil {
					return err
				}
			}
		}
	}
	fmt.Fprintf(os.Stderr, "benchsrv: registered %d tasks in %v\n", n, time.Since(start).Round(time.Millisecond))
	if queries != "" {
		if err := os.WriteFile(queries, []byte(q.String()), 0o644); err != nil {
			return err
		}
	}

	srv, err := dnsbridge.New(dnsbridge.Config{Listen: listen})
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- srv.Serve(sctx, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), pc, nil) }()
	select {
	case err := <-errc:
		return err
	case <-srv.Synced():
	}
	if err := writeReady(ready, fmt.Sprintf("PORT=%d", pc.LocalAddr().(*net.UDPAddr).Port), "ETCD_URL="+etcdURL); err != nil {
		return err
	}
	return <-errc
}

// skydnsKey is the CoreDNS etcd plugin's key of name: labels reversed
// under /skydns.
func skydnsKey(name string) string {
	labels := dns.SplitDomainName(name)
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return "/skydns/" + strings.Join(labels, "/")
}
