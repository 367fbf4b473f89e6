package regproto

import (
	"bufio"
	"bytes"
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

// KeyEntry is one key of a KeyFile.
type KeyEntry struct {
	// NVE is the name of the NVE that owns the key (or of the mapping
	// service, for the key that signs replies and notifications).
	NVE    string
	Secret []byte
}

// KeyFile is a set of keys by key id. It implements Keys.
type KeyFile map[uint32]KeyEntry

var _ Keys = KeyFile(nil)

// Secret implements Keys.
func (k KeyFile) Secret(keyID uint32) (string, []byte, bool) {
	e, ok := k[keyID]
	if !ok {
		return "", nil, false
	}
	return e.NVE, e.Secret, true
}

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
	b.WriteString("# <keyid> <nve-name> <hex-secret>\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %s %s\n", id, k[id].NVE, hex.EncodeToString(k[id].Secret))
	}
	return b.Bytes()
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
		secret, err := hex.DecodeString(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: secret of key %d: not hexadecimal", n, id)
		}
		if len(secret) < MinSecretLen || len(secret) > MaxSecretLen {
			return nil, fmt.Errorf("line %d: secret of key %d: %d bytes, want %d to %d", n, id, len(secret), MinSecretLen, MaxSecretLen)
		}
		first[uint32(id)] = n
		k[uint32(id)] = KeyEntry{NVE: f[1], Secret: secret}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line too long: %w", err)
		}
		return nil, err
	}
	return k, nil
}
