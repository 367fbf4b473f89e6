package main

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/miekg/dns"
)

// BenchmarkFreshness measures the time from an etcd commit that moves a
// task to the first DNS answer carrying the new ILA address, through the
// real watcher and the real server, polling over UDP as fast as answers
// come. Two figures: from before the Put is sent (an upper bound) and from
// when the Put returns (the commit acknowledged to the writer).
//
//	go test -run XXX -bench Freshness -benchtime 500x ./cmd/dnsbridge
func BenchmarkFreshness(b *testing.B) {
	cli, _ := etcdtest.Start(b)
	f := newFixture(b, cli)
	srv, err := dnsbridge.New(dnsbridge.Config{Zone: "ila.test.", Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), pc, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	<-srv.Synced()

	conn, err := dns.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := new(dns.Msg).SetQuestion(f.idName, dns.TypeAAAA)
	answer := func() netip6 {
		conn.SetDeadline(time.Now().Add(time.Second))
		if err := conn.WriteMsg(q); err != nil {
			b.Fatal(err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Answer) != 1 {
			return netip6{}
		}
		return netip6(r.Answer[0].(*dns.AAAA).AAAA)
	}

	key := mapsrv.TaskKey(f.dom.Name, ila.IdentifierOf(f.sir))
	var fromSend, fromCommit []time.Duration
	b.ResetTimer()
	for i := range b.N {
		gr, err := cli.Get(ctx, key)
		if err != nil || len(gr.Kvs) != 1 {
			b.Fatalf("get %s: %v", key, err)
		}
		rec, err := mapsrv.DecodeTask(key, gr.Kvs[0].Value)
		if err != nil {
			b.Fatal(err)
		}
		rec.Locator, rec.NVE = f.locA, "nve1"
		if i%2 == 0 {
			rec.Locator, rec.NVE = f.locB, "nve2"
		}
		rec.Version++
		val, err := json.Marshal(rec)
		if err != nil {
			b.Fatal(err)
		}
		a, err := f.dom.ToILA(f.sir, rec.Locator)
		if err != nil {
			b.Fatal(err)
		}
		want := netip6(a.As16())

		t0 := time.Now()
		if _, err := cli.Put(ctx, key, string(val)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		for answer() != want {
			time.Sleep(pollInterval)
			if time.Since(t0) > 5*time.Second {
				b.Fatal("the move never showed in DNS")
			}
		}
		t2 := time.Now()
		fromSend = append(fromSend, t2.Sub(t0))
		fromCommit = append(fromCommit, t2.Sub(t1))
	}
	b.StopTimer()
	report := func(ds []time.Duration, name string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Microseconds()), name+"-p99-µs")
	}
	report(fromSend, "put")
	report(fromCommit, "commit")
}

type netip6 [16]byte

// pollInterval spaces the DNS polls so that the poller does not starve
// etcd and the bridge of the two CPUs; it bounds the resolution.
const pollInterval = 100 * time.Microsecond
