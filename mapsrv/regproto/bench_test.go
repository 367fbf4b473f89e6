package regproto

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func BenchmarkMarshal(b *testing.B) {
	m := fullRequest()
	buf := make([]byte, 0, MaxMessageLen)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.AppendMarshal(buf[:0], nveSecret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	p, err := fullRequest().Marshal(nveSecret)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(p, testKeys); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalParse(b *testing.B) {
	m := fullRequest()
	buf := make([]byte, 0, MaxMessageLen)
	b.ReportAllocs()
	for b.Loop() {
		p, err := m.AppendMarshal(buf[:0], nveSecret)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Parse(p, testKeys); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRejectBadHMAC(b *testing.B) {
	p, err := fullRequest().Marshal(srvSecret)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(p, testKeys); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkReplayWindowCheck(b *testing.B) {
	w := &ReplayWindow{}
	now := time.Now()
	seq := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if err := w.Check(7, seq, now); err != nil {
			b.Fatal(err)
		}
	}
}

func benchServer(b *testing.B) netip.AddrPort {
	b.Helper()
	s := &Server{Keys: testKeys, KeyID: 99, Secret: srvSecret, Handler: HandlerFunc(grant)}
	s.Conn = listen(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	})
	return addrOf(s.Conn)
}

// BenchmarkRoundTrip is one Client.Do at a time against a Server on
// 127.0.0.1: sign, send, verify, replay-check, handle, sign the reply,
// send, verify.
func BenchmarkRoundTrip(b *testing.B) {
	c := &Client{Server: benchServer(b), KeyID: 7, Secret: nveSecret, Keys: testKeys, ServerKeyID: 99}
	b.Cleanup(func() { c.Close() })
	req := fullRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Do(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	if r := c.Stats().Retries; r != 0 {
		b.Logf("%d retries", r)
	}
}

// BenchmarkRoundTripParallel shares one Client (one socket) among
// GOMAXPROCS*8 goroutines.
func BenchmarkRoundTripParallel(b *testing.B) {
	c := &Client{Server: benchServer(b), KeyID: 7, Secret: nveSecret, Keys: testKeys, ServerKeyID: 99}
	b.Cleanup(func() { c.Close() })
	req := fullRequest()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Do(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if r := c.Stats().Retries; r != 0 {
		b.Logf("%d retries", r)
	}
}
