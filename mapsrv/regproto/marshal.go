package regproto

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"sync"
	"time"
)

// Marshal encodes m and appends the Authentication option: HMAC-SHA256
// with secret over every byte before the HMAC value. KeyID must be set.
func (m *Message) Marshal(secret []byte) ([]byte, error) {
	return m.AppendMarshal(make([]byte, 0, 256), secret)
}

// AppendMarshal is Marshal appending to dst.
func (m *Message) AppendMarshal(dst, secret []byte) ([]byte, error) {
	return m.appendMarshal(dst, secret, nil)
}

// signer signs with one secret, reusing HMAC states (keying an HMAC
// costs two SHA-256 blocks and a few allocations), or with an Ed25519
// private key when priv is set. Safe for concurrent use.
type signer struct {
	secret []byte
	priv   ed25519.PrivateKey
	pool   sync.Pool // of hash.Hash keyed with secret
}

func (s *signer) get() hash.Hash {
	if h, ok := s.pool.Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(sha256.New, s.secret)
}

// marshal is Marshal with the signer's secret (or MarshalSigned with its
// private key).
func (s *signer) marshal(m *Message) ([]byte, error) {
	if s.priv != nil {
		return m.MarshalSigned(s.priv)
	}
	h := s.get()
	b, err := m.appendMarshal(make([]byte, 0, 256), s.secret, h)
	s.pool.Put(h)
	return b, err
}

// MarshalSigned encodes m and appends the Signature option: an Ed25519
// signature with priv over every byte before the signature (the mapping
// service's replies and notifications, docs/registration.md). KeyID must
// be set.
func (m *Message) MarshalSigned(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("marshal registration message: not an Ed25519 private key")
	}
	dst, err := m.appendBody(make([]byte, 0, 256), OptSig, SigLen)
	if err != nil {
		return nil, err
	}
	return append(dst, ed25519.Sign(priv, dst)...), nil
}

// appendMarshal is AppendMarshal with mac, an HMAC keyed with secret and
// reset (nil: a new one).
func (m *Message) appendMarshal(dst, secret []byte, mac hash.Hash) ([]byte, error) {
	if len(secret) == 0 {
		return nil, errors.New("marshal registration message: empty secret")
	}
	start := len(dst)
	dst, err := m.appendBody(dst, OptAuth, AuthLen)
	if err != nil {
		return nil, err
	}
	if mac == nil {
		mac = hmac.New(sha256.New, secret)
	}
	mac.Write(dst[start:])
	return mac.Sum(dst), nil
}

// appendBody appends the header, the options and the type and length of
// the final authentication option (auth, of authLen bytes), with the
// length field counting the value still to come.
func (m *Message) appendBody(dst []byte, auth OptionType, authLen int) ([]byte, error) {
	if m.Type != TypeRequest && m.Type != TypeReply {
		return nil, fmt.Errorf("marshal registration message: type %d: %w", m.Type, ErrMalformed)
	}
	if m.KeyID == 0 {
		return nil, errors.New("marshal registration message: key id not set")
	}
	var ts uint64
	if !m.Timestamp.IsZero() {
		// The wire carries 1 to 2^63-1 nanoseconds since 1970 (what Parse
		// accepts); compare as times first, UnixNano is undefined past 2262.
		if m.Timestamp.Before(time.Unix(0, 1)) || m.Timestamp.After(time.Unix(0, math.MaxInt64)) {
			return nil, fmt.Errorf("marshal registration message: timestamp %v out of range", m.Timestamp)
		}
		n := m.Timestamp.UnixNano()
		if n <= 0 {
			return nil, fmt.Errorf("marshal registration message: timestamp %v out of range", m.Timestamp)
		}
		ts = uint64(n)
	}
	if !m.Mode.Valid() {
		return nil, fmt.Errorf("marshal registration message: move mode %d: %w", m.Mode, ErrMalformed)
	}
	if len(m.Addrs) > MaxAddrs {
		return nil, fmt.Errorf("marshal registration message: %d addresses, at most %d", len(m.Addrs), MaxAddrs)
	}
	start := len(dst)
	var flags byte
	if m.Notify {
		flags |= FlagNotify
	}
	if m.Heartbeat {
		flags |= FlagHeartbeat
	}
	if !m.Role.Valid() {
		return nil, fmt.Errorf("marshal registration message: role %d: %w", m.Role, ErrMalformed)
	}
	dst = append(dst, Version, byte(m.Type), flags, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = binary.BigEndian.AppendUint64(dst, ts)
	dst = binary.BigEndian.AppendUint32(dst, m.KeyID)

	var err error
	for _, s := range []struct {
		t OptionType
		v string
	}{{OptNVE, m.NVE}, {OptVMID, m.VMID}, {OptTenant, m.Tenant}, {OptDomain, m.Domain}, {OptAPI, m.API}} {
		if s.v == "" {
			continue
		}
		if err = checkString(s.v); err != nil {
			return nil, fmt.Errorf("marshal registration message: %s option: %w", s.t, err)
		}
		dst = append(dst, byte(s.t), byte(len(s.v)))
		dst = append(dst, s.v...)
	}
	if m.VNI != 0 {
		dst = append(dst, byte(OptVNI), 4)
		dst = binary.BigEndian.AppendUint32(dst, m.VNI)
	}
	if !m.MAC.IsZero() {
		dst = append(dst, byte(OptMAC), 6)
		dst = append(dst, m.MAC[:]...)
	}
	for _, a := range m.Addrs {
		switch {
		case !a.IsValid() || a.Zone() != "" || a.Is4In6():
			return nil, fmt.Errorf("marshal registration message: VM address %v: want an IPv4 or IPv6 address without zone, not IPv4-mapped", a)
		case a.Is4():
			b := a.As4()
			dst = append(dst, byte(OptIPv4), 4)
			dst = append(dst, b[:]...)
		default:
			b := a.As16()
			dst = append(dst, byte(OptIPv6), 16)
			dst = append(dst, b[:]...)
		}
	}
	if m.Locator != 0 {
		dst = append(dst, byte(OptLocator), 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Locator))
	}
	dst = append(dst, byte(OptLifetime), 2)
	dst = binary.BigEndian.AppendUint16(dst, m.Lifetime)
	if m.Type == TypeReply {
		dst = append(dst, byte(OptStatus), 2, byte(m.Status), byte(m.Reason))
	}
	if m.Mode != MoveNone {
		dst = append(dst, byte(OptMoveMode), 1, byte(m.Mode))
	}
	dst = m.appendFailover(dst)
	dst = append(dst, byte(auth), byte(authLen))
	n := len(dst) - start + authLen
	if n > MaxMessageLen {
		return nil, fmt.Errorf("marshal registration message: %d bytes, at most %d", n, MaxMessageLen)
	}
	binary.BigEndian.PutUint16(dst[start+4:], uint16(n))
	return dst, nil
}
