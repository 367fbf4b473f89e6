package regproto

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Parse decodes and authenticates a message: it checks the header and the
// length, looks the key id up in keys, verifies the HMAC (or, for a
// message ending with a Signature option, the Ed25519 signature with the
// key's public key: keys must then implement PublicKeys), then decodes the
// options. It does not check the replay window (see ReplayWindow). The
// message does not alias b.
func Parse(b []byte, keys Keys) (*Message, error) {
	m, authLen, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if authLen == SigOptionLen {
		var pub ed25519.PublicKey
		ok := false
		if pk, isPK := keys.(PublicKeys); isPK {
			_, pub, ok = pk.PublicKey(m.KeyID)
		}
		if !ok {
			return nil, fmt.Errorf("key id %d (signature): %w", m.KeyID, ErrUnknownKey)
		}
		if !ed25519.Verify(pub, b[:len(b)-SigLen], b[len(b)-SigLen:]) {
			return nil, fmt.Errorf("key id %d: %w", m.KeyID, ErrAuth)
		}
	} else {
		var (
			secret []byte
			ok     bool
		)
		if keys != nil {
			_, secret, ok = keys.Secret(m.KeyID)
		}
		if !ok || len(secret) == 0 {
			return nil, fmt.Errorf("key id %d: %w", m.KeyID, ErrUnknownKey)
		}
		if !Verify(b, secret) {
			return nil, fmt.Errorf("key id %d: %w", m.KeyID, ErrAuth)
		}
	}
	if err := m.parseOptions(b[HeaderLen : len(b)-authLen]); err != nil {
		return nil, err
	}
	return m, nil
}

// Verify reports whether the HMAC at the end of the message b, whose
// structure has been checked, verifies with secret.
func Verify(b []byte, secret []byte) bool {
	if len(b) < MinMessageLen {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(b[:len(b)-AuthLen])
	var sum [AuthLen]byte
	return hmac.Equal(mac.Sum(sum[:0]), b[len(b)-AuthLen:])
}

// ParseUnauthenticated decodes the header and options of b without
// checking the HMAC. Its result must not be trusted; it serves to address
// a rejected reply. On error the returned message is nevertheless non-nil
// when the fixed header could be read (Type, Seq, Timestamp and KeyID are
// then set), so that a rejection can echo the sequence number.
func ParseUnauthenticated(b []byte) (*Message, error) {
	m, authLen, err := parseHeader(b)
	if err != nil {
		return m, err
	}
	if err := m.parseOptions(b[HeaderLen : len(b)-authLen]); err != nil {
		return &Message{Type: m.Type, Seq: m.Seq, Timestamp: m.Timestamp, KeyID: m.KeyID, Notify: m.Notify, Heartbeat: m.Heartbeat}, err
	}
	return m, nil
}

// parseHeader checks the fixed header, the Length field and the position
// of the final authentication option (Authentication or Signature), whose
// whole length it returns. When the header itself could be read the
// message is returned even with an error.
func parseHeader(b []byte) (*Message, int, error) {
	m, err := parseFixed(b)
	if err != nil {
		return m, 0, err
	}
	// Walk the options to the last one: it must be the authentication.
	for at := HeaderLen; at+2 <= len(b); {
		t, l := OptionType(b[at]), int(b[at+1])
		if at+2+l < len(b) {
			at += 2 + l
			continue
		}
		switch {
		case at+2+l == len(b) && t == OptAuth && l == AuthLen:
			return m, AuthOptionLen, nil
		case at+2+l == len(b) && t == OptSig && l == SigLen:
			return m, SigOptionLen, nil
		}
		break
	}
	return m, 0, fmt.Errorf("message does not end with a %d-byte authentication or %d-byte signature option: %w", AuthLen, SigLen, ErrMalformed)
}

// parseFixed checks the fixed header and the Length field.
func parseFixed(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%d bytes, header needs %d: %w", len(b), HeaderLen, ErrTruncated)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("version %d, want %d: %w", b[0], Version, ErrMalformed)
	}
	t := MsgType(b[1])
	if t != TypeRequest && t != TypeReply {
		return nil, fmt.Errorf("message type %d: %w", b[1], ErrMalformed)
	}
	ts := binary.BigEndian.Uint64(b[16:])
	if ts > math.MaxInt64 {
		return nil, fmt.Errorf("timestamp %d out of range: %w", ts, ErrMalformed)
	}
	m := &Message{
		Type:      t,
		Notify:    b[2]&FlagNotify != 0,
		Heartbeat: b[2]&FlagHeartbeat != 0,
		Seq:       binary.BigEndian.Uint64(b[8:]),
		KeyID:     binary.BigEndian.Uint32(b[24:]),
	}
	if ts != 0 {
		m.Timestamp = time.Unix(0, int64(ts)).UTC()
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	switch {
	case n < MinMessageLen:
		return m, fmt.Errorf("length field %d, at least %d: %w", n, MinMessageLen, ErrMalformed)
	case n > MaxMessageLen:
		return m, fmt.Errorf("length field %d, at most %d: %w", n, MaxMessageLen, ErrMalformed)
	case len(b) > MaxMessageLen:
		return m, fmt.Errorf("datagram of %d bytes, at most %d: %w", len(b), MaxMessageLen, ErrMalformed)
	case len(b) < n:
		return m, fmt.Errorf("%d bytes, length field says %d: %w", len(b), n, ErrTruncated)
	case len(b) > n:
		return m, fmt.Errorf("%d bytes after the length of %d: %w", len(b)-n, n, ErrMalformed)
	}
	if m.KeyID == 0 {
		return m, fmt.Errorf("key id 0: %w", ErrMalformed)
	}
	return m, nil
}

// option bits for duplicate detection.
func optBit(t OptionType) uint32 { return 1 << t }

// parseOptions decodes the options area (between the header and the
// Authentication option) into m.
func (m *Message) parseOptions(b []byte) error {
	var seen uint32
	nAddrs := 0
	for off := 0; off < len(b); {
		at := HeaderLen + off
		if len(b)-off < 2 {
			return fmt.Errorf("option header at offset %d: %w", at, ErrMalformed)
		}
		t, l := OptionType(b[off]), int(b[off+1])
		if off+2+l > len(b) {
			return fmt.Errorf("%s option at offset %d: length %d overruns the options: %w", t, at, l, ErrMalformed)
		}
		v := b[off+2 : off+2+l]
		off += 2 + l
		if t < 32 && t != OptIPv4 && t != OptIPv6 {
			if seen&optBit(t) != 0 {
				return fmt.Errorf("%s option at offset %d: repeated: %w", t, at, ErrMalformed)
			}
			seen |= optBit(t)
		}
		want := -1 // fixed value length, -1 for strings
		switch t {
		case OptMAC:
			want = 6
		case OptIPv6:
			want = 16
		case OptIPv4:
			want = 4
		case OptLifetime, OptStatus:
			want = 2
		case OptVNI:
			want = 4
		case OptLocator:
			want = 8
		case OptMoveMode, OptRole:
			want = 1
		case OptEpoch:
			want = 4
			if seen&optBit(epochBit) != 0 {
				return fmt.Errorf("%s option at offset %d: repeated: %w", t, at, ErrMalformed)
			}
			seen |= optBit(epochBit)
		case OptApplied:
			want = 8
			if seen&optBit(appliedBit) != 0 {
				return fmt.Errorf("%s option at offset %d: repeated: %w", t, at, ErrMalformed)
			}
			seen |= optBit(appliedBit)
		case OptAPI:
			if seen&optBit(apiBit) != 0 {
				return fmt.Errorf("%s option at offset %d: repeated: %w", t, at, ErrMalformed)
			}
			seen |= optBit(apiBit)
		case OptVMID, OptTenant, OptDomain, OptNVE:
		case OptAuth, OptSig:
			return fmt.Errorf("authentication option at offset %d is not last: %w", at, ErrMalformed)
		default:
			if t&OptSkippable != 0 {
				continue
			}
			return fmt.Errorf("unknown option type %d at offset %d without the skip bit: %w", uint8(t), at, ErrMalformed)
		}
		if want >= 0 && l != want {
			return fmt.Errorf("%s option at offset %d: length %d, want %d: %w", t, at, l, want, ErrMalformed)
		}
		switch t {
		case OptMAC:
			m.MAC = ila.MAC(v)
		case OptIPv6, OptIPv4:
			if nAddrs++; nAddrs > MaxAddrs {
				return fmt.Errorf("%s option at offset %d: more than %d addresses: %w", t, at, MaxAddrs, ErrMalformed)
			}
			a, _ := netip.AddrFromSlice(v)
			if a.Is4In6() {
				return fmt.Errorf("%s option at offset %d: IPv4-mapped address %v: %w", t, at, a, ErrMalformed)
			}
			m.Addrs = append(m.Addrs, a)
		case OptLifetime:
			m.Lifetime = binary.BigEndian.Uint16(v)
		case OptStatus:
			if m.Type != TypeReply {
				return fmt.Errorf("status option at offset %d in a request: %w", at, ErrMalformed)
			}
			m.Status, m.Reason = Status(v[0]), Reason(v[1])
		case OptVNI:
			m.VNI = binary.BigEndian.Uint32(v)
		case OptLocator:
			m.Locator = ila.Locator(binary.BigEndian.Uint64(v))
		case OptMoveMode:
			m.Mode = MoveMode(v[0])
			if !m.Mode.Valid() {
				return fmt.Errorf("move mode option at offset %d: unknown mode %d: %w", at, v[0], ErrMalformed)
			}
		case OptRole, OptEpoch, OptApplied:
			if err := m.parseFailover(t, v, at); err != nil {
				return err
			}
		case OptVMID, OptTenant, OptDomain, OptNVE, OptAPI:
			s := string(v)
			if err := checkString(s); err != nil {
				return fmt.Errorf("%s option at offset %d: %v: %w", t, at, err, ErrMalformed)
			}
			switch t {
			case OptVMID:
				m.VMID = s
			case OptTenant:
				m.Tenant = s
			case OptDomain:
				m.Domain = s
			case OptNVE:
				m.NVE = s
			case OptAPI:
				m.API = s
			}
		}
	}
	if seen&optBit(OptLifetime) == 0 {
		return fmt.Errorf("no lifetime option: %w", ErrMalformed)
	}
	if m.Type == TypeReply && seen&optBit(OptStatus) == 0 {
		return fmt.Errorf("reply without status option: %w", ErrMalformed)
	}
	return nil
}
