package ndemu

import (
	"testing"

	"github.com/ilamesh/ilamesh/ila"
)

// BenchmarkFramePath is the emulator's per-solicitation work: validate and
// parse the frame, decide, build the answer frame.
func BenchmarkFramePath(b *testing.B) {
	frame := nsFrame(b, addrA, addrR)
	pol := testPolicy(false)
	b.ReportAllocs()
	for b.Loop() {
		in, err := parseFrame(frame)
		if err != nil {
			b.Fatal(err)
		}
		in.ifindex = 2
		a := pol.decide(in)
		if a.verdict != verdictAnswer {
			b.Fatalf("verdict %v", a.verdict)
		}
		if _, err := buildFrame(gatewayHW(), ila.GatewayLinkLocal(), a.reply); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideUnknown is the cost of a solicitation left unanswered.
func BenchmarkDecideUnknown(b *testing.B) {
	in, err := parseFrame(nsFrame(b, addrA, addrUnk))
	if err != nil {
		b.Fatal(err)
	}
	in.ifindex = 2
	pol := testPolicy(false)
	b.ReportAllocs()
	for b.Loop() {
		if a := pol.decide(in); a.verdict != verdictUnknown {
			b.Fatalf("verdict %v", a.verdict)
		}
	}
}
