package regproto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
)

var (
	nveSecret = []byte("0123456789abcdef-nve-a-secret!!!")
	srvSecret = []byte("0123456789abcdef-mapsrv-secret!!")
	testKeys  = KeyFile{
		7:  {NVE: "nve-a", Secret: nveSecret},
		99: {NVE: "mapsrv", Secret: srvSecret},
	}
	testTime = time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
)

// addrCmp compares netip.Addr values, which have unexported fields.
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func fullRequest() *Message {
	return &Message{
		Type: TypeRequest, Seq: 1_790_000_000_000_000_001, Timestamp: testTime, KeyID: 7,
		NVE: "nve-a", Locator: 0x2001_0db8_0000_0001, MAC: ila.MAC{0x02, 0, 0, 0, 0, 1},
		VMID: "web-1", Tenant: "acme", Domain: "dc1", VNI: 4096,
		Addrs:    []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("3333:0:0:1:2000::2")},
		Lifetime: 75, Mode: MoveHot,
	}
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("x", MaxStringLen)
	many := make([]netip.Addr, MaxAddrs)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
	}
	tests := []struct {
		name string
		msg  *Message
	}{
		{"full request", fullRequest()},
		{"minimal request", &Message{Type: TypeRequest, Seq: 1, Timestamp: testTime, KeyID: 7}},
		{"deregister", &Message{Type: TypeRequest, Seq: 2, Timestamp: testTime, KeyID: 7, VMID: "web-1", Tenant: "acme", Lifetime: 0}},
		{"zero timestamp", &Message{Type: TypeRequest, Seq: 3, KeyID: 7, Lifetime: 1}},
		{"accepted reply", &Message{Type: TypeReply, Seq: 9, Timestamp: testTime, KeyID: 99, VMID: "web-1", Lifetime: 60, Status: StatusAccepted}},
		{"rejected reply", &Message{Type: TypeReply, Seq: 9, Timestamp: testTime, KeyID: 99, Status: StatusRejected, Reason: ReasonDuplicate}},
		{"unknown status and reason", &Message{Type: TypeReply, Seq: 9, Timestamp: testTime, KeyID: 99, Status: 200, Reason: 250}},
		{"notification", &Message{Type: TypeRequest, Notify: true, Seq: 10, Timestamp: testTime, KeyID: 99, NVE: "mapsrv", VMID: "web-1", Tenant: "acme", Locator: 0x2001_0db8_0000_0002, Lifetime: 5, Mode: MoveCold}},
		{"max strings", &Message{Type: TypeRequest, Seq: 11, Timestamp: testTime, KeyID: 7, NVE: long, VMID: long, Tenant: long, Domain: long, Lifetime: 0xffff}},
		{"max addresses", &Message{Type: TypeRequest, Seq: 12, Timestamp: testTime, KeyID: 7, Addrs: many}},
		{"utf-8 names", &Message{Type: TypeRequest, Seq: 13, Timestamp: testTime, KeyID: 7, VMID: "vm-ä-日本", Tenant: "tênant"}},
		{"max key id and seq", &Message{Type: TypeRequest, Seq: ^uint64(0), Timestamp: testTime, KeyID: ^uint32(0), VNI: ^uint32(0), Locator: ^ila.Locator(0)}},
	}
	keys := KeyFile{7: testKeys[7], 99: testKeys[99], ^uint32(0): testKeys[7]}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secret := keys[tc.msg.KeyID].Secret
			b, err := tc.msg.Marshal(secret)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if len(b) > MaxMessageLen {
				t.Fatalf("Marshal gave %d bytes", len(b))
			}
			if got := int(binary.BigEndian.Uint16(b[4:])); got != len(b) {
				t.Errorf("length field %d, message %d bytes", got, len(b))
			}
			got, err := Parse(b, keys)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.msg, got, addrCmp); diff != "" {
				t.Errorf("Parse(Marshal(m)) (-want +got):\n%s", diff)
			}
			got, err = ParseUnauthenticated(b)
			if err != nil {
				t.Fatalf("ParseUnauthenticated: %v", err)
			}
			if diff := cmp.Diff(tc.msg, got, addrCmp); diff != "" {
				t.Errorf("ParseUnauthenticated(Marshal(m)) (-want +got):\n%s", diff)
			}
			// AppendMarshal appends the same bytes.
			prefix := []byte("prefix")
			ab, err := tc.msg.AppendMarshal(bytes.Clone(prefix), secret)
			if err != nil || !bytes.Equal(ab[:len(prefix)], prefix) || !bytes.Equal(ab[len(prefix):], b) {
				t.Errorf("AppendMarshal differs from Marshal (err %v)", err)
			}
		})
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	b, err := fullRequest().Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	if diff := cmp.Diff(fullRequest(), m, addrCmp); diff != "" {
		t.Errorf("message changed with the buffer (-want +got):\n%s", diff)
	}
}

func TestTruncatedAtEveryByte(t *testing.T) {
	for _, m := range []*Message{fullRequest(), {Type: TypeReply, Seq: 1, Timestamp: testTime, KeyID: 99, Status: StatusRejected, Reason: ReasonAuth}} {
		b, err := m.Marshal(testKeys[m.KeyID].Secret)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n++ {
			if _, err := Parse(b[:n], testKeys); !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse of %d of %d bytes: error %v, want ErrTruncated (and ErrMalformed)", n, len(b), err)
			}
			hdr, err := ParseUnauthenticated(b[:n])
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("ParseUnauthenticated of %d of %d bytes: error %v, want ErrTruncated", n, len(b), err)
			}
			if (hdr != nil) != (n >= HeaderLen) {
				t.Errorf("ParseUnauthenticated of %d bytes: header %v", n, hdr)
			} else if hdr != nil && (hdr.Seq != m.Seq || hdr.KeyID != m.KeyID || hdr.Type != m.Type) {
				t.Errorf("ParseUnauthenticated of %d bytes: header %+v does not match", n, hdr)
			}
		}
	}
}

func TestParseAuth(t *testing.T) {
	good, err := fullRequest().Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := fullRequest().Marshal(srvSecret)
	if err != nil {
		t.Fatal(err)
	}
	other := fullRequest()
	other.KeyID = 8
	unknown, err := other.Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		b       []byte
		keys    Keys
		want    error
		notWant error
	}{
		{"wrong secret", wrongKey, testKeys, ErrAuth, ErrUnknownKey},
		{"unknown key id", unknown, testKeys, ErrUnknownKey, nil},
		{"empty secret in keys", good, KeyFile{7: {NVE: "nve-a"}}, ErrUnknownKey, nil},
		{"empty key set", good, KeyFile{}, ErrUnknownKey, nil},
		{"nil keys", good, nil, ErrUnknownKey, nil},
		{"nil key file", good, KeyFile(nil), ErrUnknownKey, nil},
	}
	// Flipping any single bit of a valid message must fail, with
	// authentication or structure.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		tests = append(tests, struct {
			name    string
			b       []byte
			keys    Keys
			want    error
			notWant error
		}{name: "bit flip at " + strconv.Itoa(i), b: b, keys: testKeys})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.b, tc.keys)
			if err == nil {
				t.Fatalf("Parse accepted %+v", m)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if tc.want != nil && errors.Is(tc.want, ErrAuth) && !errors.Is(err, ErrAuth) {
				t.Errorf("error %v does not match ErrAuth", err)
			}
			if tc.notWant != nil && errors.Is(err, tc.notWant) {
				t.Errorf("error %v matches %v", err, tc.notWant)
			}
			if m != nil {
				t.Errorf("message returned with error")
			}
		})
	}
}

// raw builds a message from a header and raw option bytes, fixing the
// length field and appending a valid Authentication option, so that the
// option decoder can be tested behind a valid HMAC.
func raw(typ MsgType, flags byte, keyID uint32, opts ...[]byte) []byte {
	b := []byte{Version, byte(typ), flags, 0, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint64(b, 42)
	b = binary.BigEndian.AppendUint64(b, uint64(testTime.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, keyID)
	for _, o := range opts {
		b = append(b, o...)
	}
	return seal(b, testKeys[keyID].Secret)
}

// seal appends the Authentication option and fixes the length field.
func seal(b, secret []byte) []byte {
	b = append(b, byte(OptAuth), AuthLen)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)+AuthLen))
	mac := hmac.New(sha256.New, secret)
	mac.Write(b)
	return mac.Sum(b)
}

func opt(t OptionType, v ...byte) []byte { return append([]byte{byte(t), byte(len(v))}, v...) }

var lifetime = opt(OptLifetime, 0, 10)

func TestParseMalformed(t *testing.T) {
	valid := raw(TypeRequest, 0, 7, lifetime)
	withLen := func(b []byte, n int) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint16(b[4:], uint16(n))
		return b
	}
	setByte := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	big := make([]byte, MaxMessageLen+1)
	copy(big, valid)
	tests := []struct {
		name string
		b    []byte
		want error // ErrMalformed unless ErrTruncated
	}{
		{"empty", nil, ErrTruncated},
		{"version 0", setByte(valid, 0, 0), ErrMalformed},
		{"version 2", setByte(valid, 0, 2), ErrMalformed},
		{"type 0", setByte(valid, 1, 0), ErrMalformed},
		{"type 3", setByte(valid, 1, 3), ErrMalformed},
		{"length below minimum", withLen(valid, MinMessageLen-1), ErrMalformed},
		{"length above maximum", withLen(valid, MaxMessageLen+1), ErrMalformed},
		{"length beyond datagram", withLen(valid, len(valid)+1), ErrTruncated},
		{"trailing bytes", append(bytes.Clone(valid), 0), ErrMalformed},
		{"datagram over maximum", big, ErrMalformed},
		{"timestamp beyond int64", func() []byte {
			b := bytes.Clone(valid)
			binary.BigEndian.PutUint64(b[16:], 1<<63)
			return b
		}(), ErrMalformed},
		{"key id 0", raw(TypeRequest, 0, 0, lifetime), ErrMalformed},
		{"no authentication option at the end", setByte(valid, len(valid)-AuthOptionLen, byte(OptLifetime)), ErrMalformed},
		{"authentication option of wrong length", setByte(valid, len(valid)-AuthOptionLen+1, 31), ErrMalformed},
		{"no options", raw(TypeRequest, 0, 7), ErrMalformed},
		{"no lifetime", raw(TypeRequest, 0, 7, opt(OptVMID, 'a')), ErrMalformed},
		{"reply without status", raw(TypeReply, 0, 99, lifetime), ErrMalformed},
		{"request with status", raw(TypeRequest, 0, 7, lifetime, opt(OptStatus, 0, 0)), ErrMalformed},
		{"repeated lifetime", raw(TypeRequest, 0, 7, lifetime, lifetime), ErrMalformed},
		{"repeated vm-id", raw(TypeRequest, 0, 7, lifetime, opt(OptVMID, 'a'), opt(OptVMID, 'b')), ErrMalformed},
		{"repeated status", raw(TypeReply, 0, 99, lifetime, opt(OptStatus, 0, 0), opt(OptStatus, 0, 0)), ErrMalformed},
		{"option header cut", raw(TypeRequest, 0, 7, lifetime, []byte{byte(OptVMID)}), ErrMalformed},
		{"option overruns", raw(TypeRequest, 0, 7, lifetime, []byte{byte(OptVMID), 5, 'a'}), ErrMalformed},
		{"unknown option without skip bit", raw(TypeRequest, 0, 7, lifetime, opt(100, 1, 2)), ErrMalformed},
		{"authentication option not last", raw(TypeRequest, 0, 7, lifetime, opt(OptAuth, make([]byte, 32)...)), ErrMalformed},
		{"mac of 5 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptMAC, 1, 2, 3, 4, 5)), ErrMalformed},
		{"ipv6 of 4 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptIPv6, 1, 2, 3, 4)), ErrMalformed},
		{"ipv4 of 16 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptIPv4, make([]byte, 16)...)), ErrMalformed},
		{"ipv4-mapped ipv6", raw(TypeRequest, 0, 7, lifetime, opt(OptIPv6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1)), ErrMalformed},
		{"lifetime of 3 bytes", raw(TypeRequest, 0, 7, opt(OptLifetime, 0, 0, 1)), ErrMalformed},
		{"vni of 3 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptVNI, 0, 0, 1)), ErrMalformed},
		{"locator of 16 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptLocator, make([]byte, 16)...)), ErrMalformed},
		{"move mode 4", raw(TypeRequest, 0, 7, lifetime, opt(OptMoveMode, 4)), ErrMalformed},
		{"move mode of 2 bytes", raw(TypeRequest, 0, 7, lifetime, opt(OptMoveMode, 1, 1)), ErrMalformed},
		{"empty vm-id", raw(TypeRequest, 0, 7, lifetime, opt(OptVMID)), ErrMalformed},
		{"vm-id not utf-8", raw(TypeRequest, 0, 7, lifetime, opt(OptVMID, 0xff, 0xfe)), ErrMalformed},
		{"tenant with newline", raw(TypeRequest, 0, 7, lifetime, opt(OptTenant, 'a', '\n')), ErrMalformed},
		{"nve with NUL", raw(TypeRequest, 0, 7, lifetime, opt(OptNVE, 'a', 0)), ErrMalformed},
		{"domain with DEL", raw(TypeRequest, 0, 7, lifetime, opt(OptDomain, 0x7f)), ErrMalformed},
		{"too many addresses", func() []byte {
			var opts [][]byte
			for i := 0; i <= MaxAddrs; i++ {
				opts = append(opts, opt(OptIPv4, 10, 0, 0, byte(i)))
			}
			return raw(TypeRequest, 0, 7, append(opts, lifetime)...)
		}(), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, parse := range []struct {
				name string
				f    func([]byte) (*Message, error)
			}{{"Parse", func(b []byte) (*Message, error) { return Parse(b, testKeys) }}, {"ParseUnauthenticated", ParseUnauthenticated}} {
				m, err := parse.f(tc.b)
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: error %v, want %v (message %+v)", parse.name, err, tc.want, m)
				}
				if parse.name == "Parse" && m != nil {
					t.Errorf("Parse returned a message with an error")
				}
			}
		})
	}
}

func TestParseOptionalRules(t *testing.T) {
	// Unknown skippable options are skipped; options come in any order;
	// zero-valued fixed options mean absent.
	b := raw(TypeRequest, FlagNotify|0x01, 7,
		opt(OptSkippable|100, 1, 2, 3),
		opt(OptIPv4, 10, 0, 0, 2),
		lifetime,
		opt(OptSkippable|OptVMID), // the skip bit on a known type is another, unknown type
		opt(OptVMID, 'v', 'm'),
		opt(OptIPv6, 0x33, 0x33, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9),
		opt(OptVNI, 0, 0, 0, 0),
		opt(OptMoveMode, 0),
	)
	m, err := Parse(b, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		Type: TypeRequest, Notify: true, Seq: 42, Timestamp: testTime, KeyID: 7, VMID: "vm", Lifetime: 10,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("3333:0:0:1::9")},
	}
	if diff := cmp.Diff(want, m, addrCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMarshalErrors(t *testing.T) {
	base := func(f func(m *Message)) *Message {
		m := fullRequest()
		f(m)
		return m
	}
	many := make([]netip.Addr, MaxAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
	}
	tests := []struct {
		name   string
		m      *Message
		secret []byte
	}{
		{"type 0", base(func(m *Message) { m.Type = 0 }), nveSecret},
		{"key id 0", base(func(m *Message) { m.KeyID = 0 }), nveSecret},
		{"no secret", fullRequest(), nil},
		{"timestamp before 1970", base(func(m *Message) { m.Timestamp = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }), nveSecret},
		{"timestamp far future", base(func(m *Message) { m.Timestamp = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }), nveSecret},
		{"vm-id too long", base(func(m *Message) { m.VMID = strings.Repeat("a", MaxStringLen+1) }), nveSecret},
		{"tenant with control character", base(func(m *Message) { m.Tenant = "a\tb" }), nveSecret},
		{"nve not utf-8", base(func(m *Message) { m.NVE = "\xff" }), nveSecret},
		{"invalid address", base(func(m *Message) { m.Addrs = []netip.Addr{{}} }), nveSecret},
		{"zoned address", base(func(m *Message) { m.Addrs = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }), nveSecret},
		{"ipv4-mapped address", base(func(m *Message) { m.Addrs = []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")} }), nveSecret},
		{"too many addresses", base(func(m *Message) { m.Addrs = many }), nveSecret},
		{"move mode 7", base(func(m *Message) { m.Mode = 7 }), nveSecret},
		{"over 1400 bytes", base(func(m *Message) {
			long := strings.Repeat("n", MaxStringLen)
			m.NVE, m.VMID, m.Tenant, m.Domain = long, long, long, long
			m.Addrs = nil
			for i := range MaxAddrs {
				m.Addrs = append(m.Addrs, netip.AddrFrom16([16]byte{0x33, 15: byte(i)}))
			}
		}), nveSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := tc.m.Marshal(tc.secret); err == nil {
				t.Errorf("Marshal gave %d bytes, want an error", len(b))
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want uint16
	}{
		{-time.Second, 0}, {0, 0}, {3999 * time.Millisecond, 0}, {4 * time.Second, 1},
		{7 * time.Second, 1}, {300 * time.Second, 75}, {0xffff * 4 * time.Second, 0xffff},
		{0x10000 * 4 * time.Second, 0xffff}, {1 << 62, 0xffff},
	}
	for _, tc := range tests {
		if got := LifetimeUnits(tc.d); got != tc.want {
			t.Errorf("LifetimeUnits(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	m := Message{Lifetime: 75}
	if got := m.LifetimeDuration(); got != 300*time.Second {
		t.Errorf("LifetimeDuration = %v, want 5m", got)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{TypeRequest.String(), "request"}, {TypeReply.String(), "reply"}, {MsgType(9).String(), "type-9"},
		{StatusAccepted.String(), "accepted"}, {StatusRejected.String(), "rejected"},
		{Status(5).String(), "accepted-5"}, {Status(200).String(), "rejected-200"},
		{ReasonDuplicate.String(), "duplicate (flap damped)"}, {Reason(200).String(), "reason-200"},
		{MoveHot.String(), "hot"}, {MoveMode(9).String(), "mode-9"},
		{OptLocator.String(), "locator"}, {OptionType(200).String(), "option-200"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestReplyErr(t *testing.T) {
	req := fullRequest()
	rep := req.Reply(StatusRejected, ReasonConflict)
	want := &Message{Type: TypeReply, Seq: req.Seq, VMID: req.VMID, Tenant: req.Tenant, Domain: req.Domain, Status: StatusRejected, Reason: ReasonConflict}
	if diff := cmp.Diff(want, rep, addrCmp); diff != "" {
		t.Errorf("Reply (-want +got):\n%s", diff)
	}
	err := rep.Err()
	var re *RejectedError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &re) || re.Reason != ReasonConflict {
		t.Errorf("Err() = %v, want a RejectedError for conflict", err)
	}
	if err := req.Reply(StatusAccepted, ReasonNone).Err(); err != nil {
		t.Errorf("accepted reply Err() = %v", err)
	}
	if err := req.Err(); err != nil {
		t.Errorf("request Err() = %v", err)
	}
}
