package regproto

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Secret length limits of the keys file, in bytes.
const (
	MinSecretLen = 16
	MaxSecretLen = 64
)

// Keys looks up the secret of a key id and the name of the NVE (or
// mapping service) that owns it.
type Keys interface {
	Secret(keyID uint32) (nve string, secret []byte, ok bool)
}

// PublicKeys looks up the Ed25519 public key of a key id (messages ending
// with a Signature option) and the name that owns it. A Keys used to parse
// signed messages implements it.
type PublicKeys interface {
	PublicKey(keyID uint32) (owner string, pub ed25519.PublicKey, ok bool)
}

// KeyEntry is one key of a KeyFile: an HMAC secret (an NVE's key, shared
// with the mapping service), or an Ed25519 key (the mapping service's:
// Private in its own file, only Public in the NVEs' files).
type KeyEntry struct {
	// NVE is the name of the NVE that owns the key (or of the mapping
	// service, for the key that signs replies and notifications).
	NVE     string
	Secret  []byte
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// public returns the entry's Ed25519 public key, nil for an HMAC key.
func (e KeyEntry) public() ed25519.PublicKey {
	if e.Private != nil {
		return e.Private.Public().(ed25519.PublicKey)
	}
	return e.Public
}

// KeyFile is a set of keys by key id. It implements Keys.
type KeyFile map[uint32]KeyEntry

var _ Keys = KeyFile(nil)

// Secret implements Keys. An Ed25519 key has no secret: ok is false.
func (k KeyFile) Secret(keyID uint32) (string, []byte, bool) {
	e, ok := k[keyID]
	if !ok || len(e.Secret) == 0 {
		return "", nil, false
	}
	return e.NVE, e.Secret, true
}

// PublicKey implements PublicKeys. An HMAC key has none: ok is false.
func (k KeyFile) PublicKey(keyID uint32) (string, ed25519.PublicKey, bool) {
	e, ok := k[keyID]
	if !ok || e.public() == nil {
		return "", nil, false
	}
	return e.NVE, e.public(), true
}

var _ PublicKeys = KeyFile(nil)

// Lookup returns the key of the named NVE with the highest key id (the
// newest when ids grow with rotation).
func (k KeyFile) Lookup(nve string) (uint32, KeyEntry, bool) {
	var (
		id    uint32
		found bool
	)
	for i, e := range k {
		if e.NVE == nve && (!found || i > id) {
			id, found = i, true
		}
	}
	return id, k[id], found
}

// Format returns the keys in the text format of LoadKeys, sorted by key id.
func (k KeyFile) Format() []byte {
	ids := make([]uint32, 0, len(k))
	for id := range k {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b bytes.Buffer
	b.WriteString("# <keyid> <nve-name> <hex-secret | ed25519:<hex-seed> | ed25519-public:<hex-key>>\n")
	for _, id := range ids {
		e := k[id]
		v := hex.EncodeToString(e.Secret)
		switch {
		case e.Private != nil:
			v = Ed25519Prefix + hex.EncodeToString(e.Private.Seed())
		case e.Public != nil:
			v = Ed25519PublicPrefix + hex.EncodeToString(e.Public)
		}
		fmt.Fprintf(&b, "%d %s %s\n", id, e.NVE, v)
	}
	return b.Bytes()
}

// Prefixes of Ed25519 keys in a keys file (instead of a hex secret).
const (
	Ed25519Prefix       = "ed25519:"        // the private key's 32-byte seed: the mapping service's own file
	Ed25519PublicPrefix = "ed25519-public:" // the 32-byte public key: the NVEs' files
)

// NewSigningKey returns a random Ed25519 key entry owned by name, for the
// mapping service, and the public-only entry to give the NVEs.
func NewSigningKey(name string) (private, public KeyEntry, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyEntry{}, KeyEntry{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return KeyEntry{NVE: name, Private: priv}, KeyEntry{NVE: name, Public: pub}, nil
}

// NewSecret returns a random 32-byte secret.
func NewSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate secret: %w", err)
	}
	return b, nil
}

// LoadKeys reads a keys file: one key per line,
//
//	<keyid> <nve-name> <hex-secret>
//	<keyid> <name> ed25519:<hex-seed>             (the mapping service's own file)
//	<keyid> <name> ed25519-public:<hex-key>       (the NVEs' files)
//
// separated by spaces or tabs. keyid is a decimal integer from 1 to
// 4294967295, unique in the file; nve-name is the owner's name (1 to 255
// bytes, no spaces or control characters); hex-secret is 16 to 64 bytes in
// hexadecimal. Everything from '#' to the end of a line is a comment;
// blank lines are ignored. One NVE may own several keys (rotation).
func LoadKeys(path string) (KeyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	defer f.Close()
	k, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return k, nil
}

// ParseKeys reads the keys file format of LoadKeys from r.
func ParseKeys(r io.Reader) (KeyFile, error) {
	k := KeyFile{}
	first := map[uint32]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: %d fields, want \"<keyid> <nve-name> <hex-secret>\"", n, len(f))
		}
		id, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("line %d: key id %q: want a decimal integer from 1 to 4294967295", n, f[0])
		}
		if l, dup := first[uint32(id)]; dup {
			return nil, fmt.Errorf("line %d: key id %d already defined on line %d", n, id, l)
		}
		if err := checkString(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: nve name %q: %v", n, f[1], err)
		}
		e := KeyEntry{NVE: f[1]}
		switch v := f[2]; {
		case strings.HasPrefix(v, Ed25519Prefix):
			seed, err := hex.DecodeString(v[len(Ed25519Prefix):])
			if err != nil || len(seed) != ed25519.SeedSize {
				return nil, fmt.Errorf("line %d: ed25519 key %d: want %d bytes in hexadecimal (the private key's seed)", n, id, ed25519.SeedSize)
			}
			e.Private = ed25519.NewKeyFromSeed(seed)
		case strings.HasPrefix(v, Ed25519PublicPrefix):
			pub, err := hex.DecodeString(v[len(Ed25519PublicPrefix):])
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("line %d: ed25519 public key %d: want %d bytes in hexadecimal", n, id, ed25519.PublicKeySize)
			}
			e.Public = ed25519.PublicKey(pub)
		default:
			secret, err := hex.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: secret of key %d: not hexadecimal", n, id)
			}
			if len(secret) < MinSecretLen || len(secret) > MaxSecretLen {
				return nil, fmt.Errorf("line %d: secret of key %d: %d bytes, want %d to %d", n, id, len(secret), MinSecretLen, MaxSecretLen)
			}
			e.Secret = secret
		}
		first[uint32(id)] = n
		k[uint32(id)] = e
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line too long: %w", err)
		}
		return nil, err
	}
	return k, nil
}
