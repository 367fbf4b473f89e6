package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The mapping service replica the registration client last switched to is
// remembered next to the state file, so that a restarted ilad starts
// there instead of spending its first tries on a replica that stopped
// answering before the restart. The file holds one address:port; the
// configured list (-mapsrv) stays the set of accepted servers.

// mapsrvCurrentFile is where the replica in use is remembered ("" with no
// state file).
func mapsrvCurrentFile(stateFile string) string {
	if stateFile == "" {
		return ""
	}
	return strings.TrimSuffix(stateFile, ".json") + ".mapsrv"
}

// mapsrvOrder returns addrs rotated so that the replica remembered in
// file comes first (the others keep their order after it), and a note
// for the log when the file was there but not used. A missing file, an
// unreadable one, or an address not in addrs leaves addrs as configured.
func mapsrvOrder(addrs []netip.AddrPort, file string) ([]netip.AddrPort, string) {
	if file == "" || len(addrs) < 2 {
		return addrs, ""
	}
	b, err := os.ReadFile(file)
	if err != nil {
		if os.IsNotExist(err) {
			return addrs, ""
		}
		return addrs, fmt.Sprintf("read %s: %v", file, err)
	}
	a, err := netip.ParseAddrPort(strings.TrimSpace(string(b)))
	if err != nil {
		return addrs, fmt.Sprintf("%s: %v", file, err)
	}
	i := slices.Index(addrs, a)
	if i < 0 {
		return addrs, fmt.Sprintf("%s names %v, not one of -mapsrv %v", file, a, addrs)
	}
	return append(slices.Clone(addrs[i:]), addrs[:i]...), ""
}

// saveMapsrvCurrent remembers a in file (written to a temporary file and
// renamed: a crash leaves the old content or the new).
func saveMapsrvCurrent(file string, a netip.AddrPort) error {
	if file == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(a.String() + "\n"); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
