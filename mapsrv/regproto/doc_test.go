package regproto

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
)

var update = flag.Bool("update", false, "rewrite the generated examples in docs/registration.md")

const (
	docPath    = "../../docs/registration.md"
	beginMark  = "<!-- BEGIN GENERATED EXAMPLES: go test ./mapsrv/regproto -run TestDocExamples -update -->\n"
	endMark    = "<!-- END GENERATED EXAMPLES -->\n"
	docNVEKey  = 7
	docSrvKey  = 99
	docSeqBase = 1795953600000000000
)

func docSecret(first byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

var docKeys = KeyFile{
	docNVEKey: {NVE: "nve-a", Secret: docSecret(0x00)},
	docSrvKey: {NVE: "mapsrv", Secret: docSecret(0x20)},
}

var docTime = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type docExample struct {
	title, text string
	msg         *Message
}

func docExamples() []docExample {
	loc := ila.Locator(0x2001_0db8_0001_0000)
	return []docExample{
		{
			"Registration Request",
			"NVE `nve-a` (key 7) registers task `web-1` of tenant `acme` in the default domain on its locator 2001:db8:1:0, with a MAC address, a SIR address and an IPv4 address, and suggests a lifetime of 75 units (300 s).",
			&Message{
				Type: TypeRequest, Seq: docSeqBase + 1, Timestamp: docTime, KeyID: docNVEKey,
				NVE: "nve-a", VMID: "web-1", Tenant: "acme", MAC: ila.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01},
				Addrs:   []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1"), netip.MustParseAddr("10.0.0.1")},
				Locator: loc, Lifetime: 75,
			},
		},
		{
			"Registration Reply, accepted",
			"mapsrv (key 99) accepts it and grants 30 units (120 s).",
			&Message{Type: TypeReply, Seq: docSeqBase + 1, Timestamp: docTime.Add(2 * time.Millisecond), KeyID: docSrvKey, VMID: "web-1", Tenant: "acme", Lifetime: 30, Status: StatusAccepted},
		},
		{
			"Registration Reply, rejected",
			"mapsrv refuses a move by flap damping (reason 6).",
			&Message{Type: TypeReply, Seq: docSeqBase + 2, Timestamp: docTime.Add(time.Second), KeyID: docSrvKey, VMID: "web-1", Tenant: "acme", Status: StatusRejected, Reason: ReasonDuplicate},
		},
		{
			"Move notification",
			"After a hot move of `web-1` to locator 2001:db8:2:0, mapsrv tells the previous NVE with a request with the N flag; the lifetime (15 units, 60 s) is how long the previous NVE keeps forwarding packets in flight.",
			&Message{Type: TypeRequest, Notify: true, Seq: docSeqBase + 500, Timestamp: docTime.Add(10 * time.Second), KeyID: docSrvKey, NVE: "mapsrv", VMID: "web-1", Tenant: "acme", Locator: 0x2001_0db8_0002_0000, Lifetime: 15, Mode: MoveHot},
		},
		{
			"Deregistration",
			"`nve-a` deregisters the task: lifetime 0.",
			&Message{Type: TypeRequest, Seq: docSeqBase + 3, Timestamp: docTime.Add(time.Minute), KeyID: docNVEKey, VMID: "web-1", Tenant: "acme", Lifetime: 0},
		},
	}
}

// annotate explains every byte of a valid message, one field per line.
func annotate(b []byte) string {
	var s strings.Builder
	line := func(off int, v []byte, format string, args ...any) {
		for i := 0; i < len(v) || i == 0; i += 16 {
			chunk := v[i:min(i+16, len(v))]
			hexs := fmt.Sprintf("% x", chunk)
			note := ""
			if i == 0 {
				note = fmt.Sprintf(format, args...)
			}
			fmt.Fprintf(&s, "%s\n", strings.TrimRight(fmt.Sprintf("%04x  %-47s  %s", off+i, hexs, note), " "))
		}
	}
	typ := MsgType(b[1])
	line(0, b[0:1], "version %d", b[0])
	line(1, b[1:2], "type %d (%s)", b[1], typ)
	line(2, b[2:3], "flags 0x%02x%s", b[2], map[bool]string{true: " (N: notification)", false: ""}[b[2]&FlagNotify != 0])
	line(3, b[3:4], "reserved")
	line(4, b[4:6], "length %d", binary.BigEndian.Uint16(b[4:]))
	line(6, b[6:8], "reserved")
	line(8, b[8:16], "sequence number %d", binary.BigEndian.Uint64(b[8:]))
	ts := binary.BigEndian.Uint64(b[16:])
	line(16, b[16:24], "timestamp %d ns = %s", ts, time.Unix(0, int64(ts)).UTC().Format(time.RFC3339Nano))
	line(24, b[24:28], "key id %d", binary.BigEndian.Uint32(b[24:]))
	for off := HeaderLen; off < len(b); {
		t, l := OptionType(b[off]), int(b[off+1])
		v := b[off+2 : off+2+l]
		var d string
		switch t {
		case OptNVE, OptVMID, OptTenant, OptDomain:
			d = fmt.Sprintf("%q", v)
		case OptMAC:
			d = ila.MAC(v).String()
		case OptIPv6, OptIPv4:
			a, _ := netip.AddrFromSlice(v)
			d = a.String()
		case OptLocator:
			d = ila.Locator(binary.BigEndian.Uint64(v)).String()
		case OptLifetime:
			n := binary.BigEndian.Uint16(v)
			d = fmt.Sprintf("%d units = %v", n, time.Duration(n)*LifetimeUnit)
		case OptStatus:
			d = fmt.Sprintf("status %d (%s), reason %d (%s)", v[0], Status(v[0]), v[1], Reason(v[1]))
		case OptVNI:
			d = fmt.Sprint(binary.BigEndian.Uint32(v))
		case OptMoveMode:
			d = MoveMode(v[0]).String()
		case OptAuth:
			d = "HMAC-SHA256"
		}
		line(off, b[off:off+2], "option %d (%s), length %d", t, t, l)
		line(off+2, v, "  %s", d)
		off += 2 + l
	}
	return s.String()
}

func generateExamples(t *testing.T) string {
	t.Helper()
	var s strings.Builder
	s.WriteString(beginMark)
	fmt.Fprintf(&s, "\nKeys used by the examples (keys file format of section 6):\n\n```\n%s```\n", docKeys.Format())
	for i, e := range docExamples() {
		b, err := e.msg.Marshal(docKeys[e.msg.KeyID].Secret)
		if err != nil {
			t.Fatalf("example %q: %v", e.title, err)
		}
		back, err := Parse(b, docKeys)
		if err != nil {
			t.Fatalf("example %q does not parse: %v", e.title, err)
		}
		if diff := cmp.Diff(e.msg, back, addrCmp); diff != "" {
			t.Fatalf("example %q round trip (-want +got):\n%s", e.title, diff)
		}
		fmt.Fprintf(&s, "\n### 10.%d %s (%d bytes)\n\n%s\n\n```\n%s```\n", i+1, e.title, len(b), e.text, annotate(b))
	}
	s.WriteString("\n" + endMark)
	return s.String()
}

// TestDocExamples checks that the hex dumps in docs/registration.md are
// what this implementation produces (run with -update to rewrite them).
func TestDocExamples(t *testing.T) {
	gen := generateExamples(t)
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read the protocol document: %v", err)
	}
	i, j := bytes.Index(doc, []byte(beginMark)), bytes.Index(doc, []byte(endMark))
	if i < 0 || j < i {
		t.Fatalf("%s has no generated-examples markers", docPath)
	}
	cur := string(doc[i : j+len(endMark)])
	if cur == gen {
		return
	}
	if !*update {
		t.Fatalf("examples in %s are out of date; run go test ./mapsrv/regproto -run TestDocExamples -update\n%s", docPath, cmp.Diff(cur, gen))
	}
	out := append(append(bytes.Clone(doc[:i]), gen...), doc[j+len(endMark):]...)
	if err := os.WriteFile(docPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
