package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// BenchmarkScaleStart measures how long mapsrv takes to start over a
// store that already holds 1,000 and ILA_BENCH_TASKS (100,000) tasks, side
// by side: the mapsrv binary's run (embedded etcd on its data directory,
// the service, the API, the registration listener), filled by real UDP
// registrations (HMAC, one NVE's client, 32 workers), stopped, then started again. Figures:
// start -> API healthy, start -> a registration (a refresh of a stored
// task) answered, and the p50/p99 of the next 2,000 refreshes, 32
// workers, while the restarted replica does its start-up work (liveness
// adoption, first sweep).
//
//	go test -run '^$' -bench ScaleStart -benchtime 1x ./cmd/mapsrv
func BenchmarkScaleStart(b *testing.B) {
	big := 100_000
	if v := os.Getenv("ILA_BENCH_TASKS"); v != "" {
		if _, err := fmt.Sscan(v, &big); err != nil || big < 1000 {
			b.Fatalf("ILA_BENCH_TASKS=%q: want a number >= 1000", v)
		}
	}
	for _, n := range []int{1000, big} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			for range b.N {
				benchStart(b, n)
			}
		})
	}
}

func benchStart(b *testing.B, n int) {
	dir, err := os.MkdirTemp("", "mapsrv-start")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	keysFile := filepath.Join(dir, "keys")
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: bytes.Repeat([]byte{1}, 32)},
		2: {NVE: "nve1", Secret: bytes.Repeat([]byte{2}, 32)},
	}
	if err := os.WriteFile(keysFile, keys.Format(), 0o600); err != nil {
		b.Fatal(err)
	}
	api, reg := freePort(b, "tcp"), freePort(b, "udp")
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--etcd-client-url", "unix://" + filepath.Join(dir, "client.sock"),
		"--api-addr", api, "--reg-addr", reg, "--keys", keysFile}
	stop := start(b, api, args...)
	setup(b, newClient(b, api, ""), ila.CsumNeutralMap)
	sir := func(i int) netip.Addr {
		var a [16]byte
		copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8})
		id := uint64(i+1)<<16 | 1 // neutral-map: the low 16 bits are not 0
		for k := range 8 {
			a[8+k] = byte(id >> (56 - 8*k))
		}
		return netip.AddrFrom16(a)
	}
	register := func(ctx context.Context, c *regproto.Client, i int) (time.Duration, error) {
		t0 := time.Now()
		rep, err := c.Do(ctx, &regproto.Message{VMID: fmt.Sprintf("vm%d", i), Tenant: "t1", Addrs: []netip.Addr{sir(i)}, Lifetime: 900})
		if err == nil {
			err = rep.Err()
		}
		return time.Since(t0), err
	}
	// One client, as one NVE with many tasks (it keeps running across
	// the mapsrv restart).
	cl := &regproto.Client{Server: netip.MustParseAddrPort(reg), KeyID: 2, Secret: keys[2].Secret, Keys: keys, ServerKeyID: 1, Timeout: 2 * time.Second}
	defer cl.Close()
	// many registers tasks [0, count) with 32 workers and returns the
	// latencies.
	many := func(count int) ([]time.Duration, error) {
		var next atomic.Int64
		lat := make([]time.Duration, count)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= count {
						return
					}
					d, err := register(b.Context(), cl, i)
					if err != nil {
						mu.Lock()
						if first == nil {
							first = fmt.Errorf("register task %d: %w", i, err)
						}
						mu.Unlock()
						return
					}
					lat[i] = d
				}
			}()
		}
		wg.Wait()
		return lat, first
	}
	t0 := time.Now()
	if _, err := many(n); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d tasks registered in %v", n, time.Since(t0).Round(time.Millisecond))
	stop()

	b.ResetTimer()
	t0 = time.Now()
	stop = start(b, api, args...) // returns once the API answers /healthz
	healthy := time.Since(t0)
	for {
		if _, err := register(b.Context(), cl, 0); err == nil {
			break
		} else if time.Since(t0) > time.Minute {
			b.Fatalf("no registration answered within a minute of the start: %v", err)
		}
	}
	firstReg := time.Since(t0)
	lat, err := many(min(n, 2000))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	stop()
	slices.Sort(lat)
	b.ReportMetric(float64(healthy.Milliseconds()), "healthy-ms")
	b.ReportMetric(float64(firstReg.Milliseconds()), "first-reg-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "reg-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "reg-p99-ms")
}
