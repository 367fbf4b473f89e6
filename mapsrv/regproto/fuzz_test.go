package regproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
)

func seedMessages(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, m := range []*Message{
		fullRequest(),
		{Type: TypeRequest, Seq: 1, Timestamp: testTime, KeyID: 7},
		{Type: TypeReply, Seq: 9, Timestamp: testTime, KeyID: 99, VMID: "web-1", Lifetime: 60, Status: StatusRejected, Reason: ReasonConflict},
		{Type: TypeRequest, Notify: true, Seq: 10, Timestamp: testTime, KeyID: 99, NVE: "mapsrv", Locator: 0x2001_0db8_0000_0002, Lifetime: 5, Mode: MoveCold},
	} {
		b, err := m.Marshal(testKeys[m.KeyID].Secret)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	out = append(out, raw(TypeRequest, 0, 7, lifetime, opt(OptSkippable|100, 1, 2, 3)))
	return out
}

// checkRoundTrip: a message that parsed must marshal, and parse back to
// itself.
func checkRoundTrip(t *testing.T, m *Message) {
	t.Helper()
	secret := testKeys[m.KeyID].Secret
	b, err := m.Marshal(secret)
	if err != nil {
		t.Fatalf("parsed message %+v does not marshal: %v", m, err)
	}
	back, err := Parse(b, testKeys)
	if err != nil {
		t.Fatalf("re-marshalled message does not parse: %v", err)
	}
	if diff := cmp.Diff(m, back, addrCmp); diff != "" {
		t.Fatalf("round trip (-parsed +re-parsed):\n%s", diff)
	}
}

func checkError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) {
		t.Fatalf("error %v matches neither ErrMalformed nor ErrAuth", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, testKeys)
		if err != nil {
			checkError(t, err)
			return
		}
		checkRoundTrip(t, m)
	})
}

// FuzzParseSigned signs whatever the fuzzer produces, so that the option
// decoder behind the HMAC is explored too.
func FuzzParseSigned(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b[:len(b)-AuthOptionLen])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < HeaderLen {
			return
		}
		keyID := binary.BigEndian.Uint32(b[24:])
		e, ok := testKeys[keyID]
		if !ok {
			keyID = 7
			e = testKeys[7]
			b = bytes.Clone(b)
			binary.BigEndian.PutUint32(b[24:], keyID)
		}
		b = seal(bytes.Clone(b), e.Secret)
		m, err := Parse(b, testKeys)
		u, uerr := ParseUnauthenticated(b)
		if (err == nil) != (uerr == nil) {
			t.Fatalf("Parse error %v, ParseUnauthenticated error %v", err, uerr)
		}
		if err != nil {
			checkError(t, err)
			return
		}
		if diff := cmp.Diff(m, u, addrCmp); diff != "" {
			t.Fatalf("Parse and ParseUnauthenticated differ (-Parse +ParseUnauthenticated):\n%s", diff)
		}
		checkRoundTrip(t, m)
	})
}

func FuzzParseUnauthenticated(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseUnauthenticated(b)
		if err != nil {
			checkError(t, err)
			if m != nil && (len(b) < HeaderLen || m.Seq != binary.BigEndian.Uint64(b[8:])) {
				t.Fatalf("header returned with the error does not match the bytes")
			}
			return
		}
		if m.KeyID == 0 || len(b) < MinMessageLen {
			t.Fatalf("accepted %+v from %d bytes", m, len(b))
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(true, uint64(1), int64(testTime.UnixNano()), "nve-a", uint64(0x20010db800000001), []byte{2, 0, 0, 0, 0, 1},
		"web-1", "acme", "dc1", uint32(4096), []byte{0x33, 0x33, 0, 0, 0, 0, 0, 1, 0x20, 0, 0, 0, 0, 0, 0, 1, 10, 0, 0, 1}, uint16(75), uint8(0), uint8(0), uint8(1), false)
	f.Add(false, uint64(1<<63), int64(0), "", uint64(0), []byte{}, "", "", "", uint32(0), []byte{}, uint16(0), uint8(128), uint8(7), uint8(0), true)
	f.Fuzz(func(t *testing.T, req bool, seq uint64, ts int64, nve string, loc uint64, mac []byte,
		vmid, tenant, domain string, vni uint32, addrs []byte, lt uint16, status, reason, mode uint8, notify bool) {
		m := &Message{
			Type: TypeReply, Seq: seq, KeyID: 7, NVE: nve, Locator: ila.Locator(loc),
			VMID: vmid, Tenant: tenant, Domain: domain, VNI: vni, Lifetime: lt,
			Status: Status(status), Reason: Reason(reason), Mode: MoveMode(mode), Notify: notify,
		}
		if req {
			m.Type, m.Status, m.Reason = TypeRequest, 0, 0
		}
		if ts != 0 {
			m.Timestamp = time.Unix(0, ts).UTC()
		}
		copy(m.MAC[:], mac)
		// Addresses: 4- or 16-byte chunks chosen by a leading byte.
		for len(addrs) > 0 {
			n := 4
			if addrs[0]&1 == 1 {
				n = 16
			}
			addrs = addrs[1:]
			if len(addrs) < n {
				break
			}
			a, _ := netip.AddrFromSlice(addrs[:n])
			m.Addrs = append(m.Addrs, a)
			addrs = addrs[n:]
		}
		b, err := m.Marshal(nveSecret)
		if err != nil {
			return // invalid input (long or bad strings, mapped addresses, ...)
		}
		if len(b) > MaxMessageLen {
			t.Fatalf("Marshal gave %d bytes", len(b))
		}
		got, err := Parse(b, testKeys)
		if err != nil {
			t.Fatalf("Parse(Marshal(%+v)): %v", m, err)
		}
		if diff := cmp.Diff(m, got, addrCmp); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
