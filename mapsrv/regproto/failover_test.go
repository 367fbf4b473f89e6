package regproto

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFailoverFieldsRoundTrip(t *testing.T) {
	for _, m := range []*Message{
		{Type: TypeRequest, Seq: 1, Timestamp: testTime, KeyID: 7, NVE: "nve-a", Heartbeat: true, Epoch: 3},
		{Type: TypeRequest, Seq: 2, Timestamp: testTime, KeyID: 7, NVE: "nve-a", Heartbeat: true, Epoch: 3, Applied: 1<<40 + 7, API: "https://[fd99::1]:7483"},
		{Type: TypeReply, Seq: 1, Timestamp: testTime, KeyID: 99, Status: StatusRejected, Reason: ReasonFenced, Epoch: 4},
		func() *Message { m := fullRequest(); m.Role, m.Epoch = RoleStandby, 0xfffffffe; return m }(),
	} {
		b, err := m.Marshal(testKeys[m.KeyID].Secret)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b, testKeys)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m, got, addrCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestFailoverFieldsMalformed(t *testing.T) {
	base := func(opts ...byte) []byte {
		m := &Message{Type: TypeRequest, Seq: 1, Timestamp: testTime, KeyID: 7}
		b, err := m.Marshal(nveSecret)
		if err != nil {
			t.Fatal(err)
		}
		// Insert opts before the Authentication option and sign again.
		body := append(append([]byte{}, b[:len(b)-AuthOptionLen]...), opts...)
		body = append(body, byte(OptAuth), AuthLen)
		body[4], body[5] = byte((len(body)+AuthLen)>>8), byte(len(body)+AuthLen)
		return sign(body, nveSecret)
	}
	if m, err := Parse(base(byte(OptRole), 1, 1, byte(OptEpoch), 4, 0, 0, 0, 9), testKeys); err != nil || m.Role != RoleStandby || m.Epoch != 9 {
		t.Fatalf("well-formed role and epoch: %+v, %v", m, err)
	}
	if m, err := Parse(base(byte(OptApplied), 8, 0, 0, 0, 0, 0, 0, 1, 2), testKeys); err != nil || m.Applied != 258 {
		t.Fatalf("well-formed applied revision: %+v, %v", m, err)
	}
	for name, b := range map[string][]byte{
		"role 2":              base(byte(OptRole), 1, 2),
		"role length 2":       base(byte(OptRole), 2, 1, 0),
		"role twice":          base(byte(OptRole), 1, 1, byte(OptRole), 1, 1),
		"epoch length 3":      base(byte(OptEpoch), 3, 0, 0, 1),
		"epoch twice":         base(byte(OptEpoch), 4, 0, 0, 0, 1, byte(OptEpoch), 4, 0, 0, 0, 2),
		"applied length 4":    base(byte(OptApplied), 4, 0, 0, 0, 1),
		"applied twice":       base(byte(OptApplied), 8, 0, 0, 0, 0, 0, 0, 0, 1, byte(OptApplied), 8, 0, 0, 0, 0, 0, 0, 0, 2),
		"applied above int64": base(byte(OptApplied), 8, 0x80, 0, 0, 0, 0, 0, 0, 1),
		"api twice":           base(byte(OptAPI), 1, 'a', byte(OptAPI), 1, 'b'),
		"api control char":    base(byte(OptAPI), 1, 0x07),
	} {
		if _, err := Parse(b, testKeys); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (&Message{Type: TypeRequest, KeyID: 7, Role: 9}).Marshal(nveSecret); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal role 9: %v, want ErrMalformed", err)
	}
}

// sign appends the HMAC to body, which ends with the Authentication
// option's type and length.
func sign(body, secret []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return mac.Sum(body)
}
