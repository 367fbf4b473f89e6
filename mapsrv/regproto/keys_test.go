package regproto

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const hex16 = "000102030405060708090a0b0c0d0e0f"

func TestParseKeys(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    KeyFile
		wantErr string // substring of the error
	}{
		{"empty", "", KeyFile{}, ""},
		{"comments and blanks", "# keys\n\n   \n\t# more\n", KeyFile{}, ""},
		{
			"two keys, tabs, trailing comment, rotation",
			"1 nve-a " + hex16 + "\n2\tnve-a\t" + strings.ToUpper(hex16) + "ff  # rotated\n100 mapsrv " + hex16 + hex16 + "\n",
			KeyFile{
				1:   {NVE: "nve-a", Secret: []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f")},
				2:   {NVE: "nve-a", Secret: []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\xff")},
				100: {NVE: "mapsrv", Secret: append([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"), []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f")...)},
			},
			"",
		},
		{"max key id", "4294967295 n " + hex16, KeyFile{4294967295: {NVE: "n", Secret: []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f")}}, ""},
		{"two fields", "\n1 nve-a\n", nil, "line 2: 2 fields"},
		{"four fields", "1 nve a " + hex16, nil, "line 1: 4 fields"},
		{"key id 0", "0 n " + hex16, nil, "line 1: key id \"0\""},
		{"key id too big", "4294967296 n " + hex16, nil, "line 1: key id"},
		{"key id negative", "-1 n " + hex16, nil, "line 1: key id"},
		{"key id hex", "0x10 n " + hex16, nil, "line 1: key id"},
		{"duplicate key id", "5 a " + hex16 + "\n# x\n5 b " + hex16, nil, "line 3: key id 5 already defined on line 1"},
		{"secret not hex", "1 n " + hex16 + "zz", nil, "line 1: secret of key 1: not hexadecimal"},
		{"secret odd length", "1 n " + hex16 + "f", nil, "not hexadecimal"},
		{"secret too short", "1 n 0011", nil, "line 1: secret of key 1: 2 bytes, want 16 to 64"},
		{"secret too long", "1 n " + strings.Repeat("ab", 65), nil, "65 bytes"},
		{"name not utf-8", "1 \xff " + hex16, nil, "line 1: nve name"},
		{"line too long", strings.Repeat("a", 70000), nil, "line too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeys(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	k := KeyFile{3: {NVE: "nve-b", Secret: bytes.Repeat([]byte{0xab}, 32)}, 1: {NVE: "mapsrv", Secret: bytes.Repeat([]byte{1}, 16)}}
	path := filepath.Join(dir, "keys")
	if err := os.WriteFile(path, k.Format(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("LoadKeys(Format()) (-want +got):\n%s", diff)
	}
	nve, secret, ok := got.Secret(3)
	if !ok || nve != "nve-b" || !bytes.Equal(secret, k[3].Secret) {
		t.Errorf("Secret(3) = %q, %x, %v", nve, secret, ok)
	}
	if _, _, ok := got.Secret(2); ok {
		t.Error("Secret(2) found")
	}

	if _, err := LoadKeys(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "keys file") {
		t.Errorf("missing file: error %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("1 a "+hex16+"\n2 b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(bad); err == nil || !strings.Contains(err.Error(), bad+": line 2:") {
		t.Errorf("bad file: error %v, want it to name the file and line 2", err)
	}
}

func TestKeyFileLookup(t *testing.T) {
	k := KeyFile{1: {NVE: "a"}, 5: {NVE: "a"}, 3: {NVE: "a"}, 2: {NVE: "b"}}
	if id, e, ok := k.Lookup("a"); !ok || id != 5 || e.NVE != "a" {
		t.Errorf("Lookup(a) = %d, %v, %v; want key 5", id, e, ok)
	}
	if _, _, ok := k.Lookup("c"); ok {
		t.Error("Lookup(c) found a key")
	}
	s1, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewSecret()
	if len(s1) != 32 || bytes.Equal(s1, s2) {
		t.Errorf("NewSecret gave %x and %x", s1, s2)
	}
}
