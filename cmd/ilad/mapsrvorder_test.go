package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMapsrvOrder(t *testing.T) {
	a, b, c := netip.MustParseAddrPort("[fd00::1]:4790"), netip.MustParseAddrPort("[fd00::2]:4790"), netip.MustParseAddrPort("[fd00::3]:4790")
	list := []netip.AddrPort{a, b, c}
	dir := t.TempDir()
	file := mapsrvCurrentFile(filepath.Join(dir, "nve1.tasks.json"))
	if want := filepath.Join(dir, "nve1.tasks.mapsrv"); file != want {
		t.Errorf("file %q, want %q", file, want)
	}
	if got := mapsrvCurrentFile(""); got != "" {
		t.Errorf("no state file: %q, want none", got)
	}
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		want    []netip.AddrPort
		note    string
	}{
		{name: "no file", want: list},
		{name: "second", content: ptr("[fd00::2]:4790\n"), want: []netip.AddrPort{b, c, a}},
		{name: "third", content: ptr("[fd00::3]:4790"), want: []netip.AddrPort{c, a, b}},
		{name: "first", content: ptr("[fd00::1]:4790\n"), want: list},
		{name: "not configured", content: ptr("[fd00::9]:4790\n"), want: list, note: "not one of -mapsrv"},
		{name: "garbage", content: ptr("nonsense\n"), want: list, note: "not an ip:port"},
		{name: "empty", content: ptr(""), want: list, note: "mapsrv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(file)
			if tc.content != nil {
				if err := os.WriteFile(file, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, note := mapsrvOrder(list, file)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			if (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
				t.Errorf("note %q, want one containing %q", note, tc.note)
			}
		})
	}
	// The configured list is not modified, and one address is left alone.
	if got, _ := mapsrvOrder([]netip.AddrPort{a}, file); len(got) != 1 || got[0] != a {
		t.Errorf("one address: %v", got)
	}
	// What the switch writes, the next start reads.
	if err := saveMapsrvCurrent(file, c); err != nil {
		t.Fatal(err)
	}
	if got, note := mapsrvOrder(list, file); note != "" || got[0] != c || list[0] != a {
		t.Errorf("after saving %v: %v (%q), configured list now %v", c, got, note, list)
	}
	if err := saveMapsrvCurrent("", c); err != nil {
		t.Errorf("no file: %v", err)
	}
	if err := saveMapsrvCurrent(filepath.Join(dir, "missing", "x.mapsrv"), c); err == nil {
		t.Error("save into a missing directory: no error")
	}
}

func ptr[T any](v T) *T { return &v }
