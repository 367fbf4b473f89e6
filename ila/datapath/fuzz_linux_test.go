package datapath

import (
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// FuzzTranslateChecksum feeds packets built from fuzz input through the
// task and uplink programs and checks the invariant the checksum modes
// promise: a transport checksum valid before translation is valid after it
// for the addresses now in the packet (no-action: for the SIR addresses),
// and a rewritten packet keeps its length and payload.
func FuzzTranslateChecksum(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint8(0), []byte("hello"))
	f.Add(uint8(1), uint8(1), uint8(2), []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(2), uint8(2), uint8(1), make([]byte, 300))
	f.Add(uint8(3), uint8(1), uint8(3), []byte{0xff, 0xff})
	tb := newTestbed(f, Config{})
	f.Fuzz(func(t *testing.T, modeSel, protoSel, extSel uint8, payload []byte) {
		if len(payload) > 1400 {
			payload = payload[:1400]
		}
		mode := ila.CsumModes[int(modeSel)%len(ila.CsumModes)]
		proto := protos[int(protoSel)%len(protos)]
		e := envFor(mode)
		var seg []byte
		switch proto {
		case ila.ProtoTCP:
			seg = testutil.TCP(1, 2, 3, 4, testutil.TCPAck, payload)
		case ila.ProtoUDP:
			seg = testutil.UDP(1, 2, payload)
		default:
			seg = testutil.ICMPv6(128, 0, append(make([]byte, 4), payload...))
		}
		var ext []testutil.Ext
		for i := 0; i < int(extSel%4); i++ {
			ext = append(ext, testutil.Ext{Proto: []uint8{testutil.ExtHopByHop, testutil.ExtDestOpts, testutil.ExtRouting}[i%3], Data: payload[:min(len(payload), 6)]})
		}
		if len(ext) > 0 && ext[0].Proto != testutil.ExtHopByHop {
			ext[0].Proto = testutil.ExtDestOpts
		}
		sirSrc, sirDst := e.sir(idLocal), e.sir(idRemote)

		// Task ingress: SIR -> ILA.
		in := testutil.Packet{EthDst: ila.GatewayMAC(), Src: sirSrc, Dst: sirDst, Proto: proto, L4: seg, Ext: ext}.Frame()
		act, out := tb.run(t, tb.d.objs.IlaTask, tb.task, in)
		if act != actRedirect {
			t.Fatalf("task: action %d, want redirect", act)
		}
		p, err := testutil.Parse(out[:len(in)])
		if err != nil {
			t.Fatal(err)
		}
		if want := e.ila(t, idRemote, e.remote); p.Dst != want {
			t.Fatalf("task: dst %s, want %s", p.Dst, want)
		}
		if !ila.VerifyTransportChecksum(proto, p.Src, wireCsumDst(mode, sirDst, p.Dst), p.L4) {
			t.Fatalf("task: %s checksum invalid after translation", mode)
		}

		// Uplink: the same packet arriving for our locator, ILA -> SIR.
		ilaDst := e.ila(t, idLocalMAC, e.own)
		pk := testutil.Packet{EthDst: uplinkMAC, Src: e.sir(idRemote), Dst: ilaDst, Proto: proto, L4: seg, Ext: ext}
		in2 := frameWithCsumFor(pk, wireCsumDst(mode, e.sir(idLocalMAC), ilaDst))
		act, out = tb.run(t, tb.d.objs.IlaUplink, tb.uplink, in2)
		if act != actRedirect {
			t.Fatalf("uplink: action %d, want redirect", act)
		}
		p, err = testutil.Parse(out[:len(in2)])
		if err != nil {
			t.Fatal(err)
		}
		if p.Dst != e.sir(idLocalMAC) || !ila.VerifyTransportChecksum(proto, p.Src, p.Dst, p.L4) {
			t.Fatalf("uplink: dst %s, checksum valid %v", p.Dst, ila.VerifyTransportChecksum(proto, p.Src, p.Dst, p.L4))
		}
	})
}
