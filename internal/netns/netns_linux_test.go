//go:build linux

package netns

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

func privileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to create network namespaces")
	}
}

// newNS creates a test namespace and removes it in Cleanup; it skips if the
// kernel refuses.
func newNS(t *testing.T, prefix string) *NS {
	t.Helper()
	privileged(t)
	ns, err := New(Unique(prefix))
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("kernel refused a network namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	return ns
}

func TestUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"", "t", "ilab", "abcdef", "abcdefg", "averyveryverylongprefix"} {
		for range 50 {
			u := Unique(prefix)
			if !strings.HasPrefix(u, prefix[:min(len(prefix), 15)]) {
				t.Errorf("Unique(%q) = %q: lost the prefix", prefix, u)
			}
			if len(prefix) <= 7 && len(u) > 15 {
				t.Errorf("Unique(%q) = %q: longer than 15", prefix, u)
			}
			if seen[u] {
				t.Errorf("Unique(%q) = %q: repeated", prefix, u)
			}
			seen[u] = true
		}
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "a\x00"} {
		if _, err := Open(name); err == nil {
			t.Errorf("Open(%q): no error", name)
		}
	}
}

func TestIntegrationNewDoDelete(t *testing.T) {
	ns := newNS(t, "tns")

	if got, want := ns.Path(), filepath.Join(Dir, ns.Name()); got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	host, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	// The caller's thread never leaves the host namespace.
	if cur, err := vnetns.Get(); err != nil || !cur.Equal(host) {
		t.Fatalf("caller switched namespace by New (err %v)", err)
	}

	// Inside Do we are in the namespace: only lo exists.
	var inside vnetns.NsHandle
	err = ns.Do(func() error {
		var err error
		inside, err = vnetns.Get()
		if err != nil {
			return err
		}
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			return errors.New("unexpected links in a fresh namespace")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	defer inside.Close()
	if !inside.Equal(ns.h) {
		t.Errorf("Do ran outside the namespace")
	}
	if inside.Equal(host) {
		t.Errorf("Do ran in the host namespace")
	}
	if cur, err := vnetns.Get(); err != nil || !cur.Equal(host) {
		t.Fatalf("caller switched namespace by Do (err %v)", err)
	}

	// Errors from fn come back unchanged.
	sentinel := errors.New("boom")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do error = %v, want %v", err, sentinel)
	}

	// Open by name and by path sees the same namespace.
	for _, name := range []string{ns.Name(), ns.Path()} {
		o, err := Open(name)
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		if !o.h.Equal(ns.h) {
			t.Errorf("Open(%q) is a different namespace", name)
		}
		if err := o.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}

	names, err := List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == ns.Name()
	}
	if !found {
		t.Errorf("List() = %v, missing %s", names, ns.Name())
	}

	// New on an existing name fails.
	if _, err := New(ns.Name()); err == nil {
		t.Errorf("New(%q) twice: no error", ns.Name())
	}
}

func TestIntegrationDeleteIdempotent(t *testing.T) {
	privileged(t)
	ns, err := New(Unique("tdel"))
	if err != nil {
		t.Skipf("kernel refused a network namespace: %v", err)
	}
	for i := range 2 {
		if err := ns.Delete(); err != nil {
			t.Errorf("Delete #%d: %v", i, err)
		}
	}
	if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Delete: %v", ns.Path(), err)
	}
	if err := Remove(ns.Name()); err != nil {
		t.Errorf("Remove of a missing namespace: %v", err)
	}
}

// TestIntegrationVethPing builds two namespaces joined by a veth through
// netlink handles and exchanges a UDP datagram over IPv6 with sockets opened
// inside Do and used outside it.
func TestIntegrationVethPing(t *testing.T) {
	a := newNS(t, "tva")
	b := newNS(t, "tvb")
	ha, err := a.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := b.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()

	va, vb := Unique("va"), Unique("vb")
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: va},
		PeerName:      vb,
		PeerNamespace: netlink.NsFd(b.Fd()),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	addrA := netip.MustParsePrefix("fd00:77::1/64")
	addrB := netip.MustParsePrefix("fd00:77::2/64")
	for _, x := range []struct {
		h    *netlink.Handle
		name string
		p    netip.Prefix
	}{{ha, va, addrA}, {hb, vb, addrB}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatalf("link %s: %v", x.name, err)
		}
		ipn := &net.IPNet{IP: net.IP(x.p.Addr().AsSlice()), Mask: net.CIDRMask(x.p.Bits(), 128)}
		if err := x.h.AddrAdd(l, &netlink.Addr{IPNet: ipn, Flags: 0x02 /* IFA_F_NODAD */}); err != nil {
			t.Fatalf("addr %s: %v", x.name, err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", x.name, err)
		}
	}

	var srv, cli *net.UDPConn
	if err := b.Do(func() error {
		var err error
		srv, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB.Addr(), 0)))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", b.Name(), err)
	}
	defer srv.Close()
	if err := a.Do(func() error {
		var err error
		cli, err = net.ListenUDP("udp6", nil)
		return err
	}); err != nil {
		t.Fatalf("socket in %s: %v", a.Name(), err)
	}
	defer cli.Close()

	dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := cli.WriteToUDPAddrPort([]byte("hello"), dst); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 16)
	if err := srv.SetReadDeadline(deadline()); err != nil {
		t.Fatal(err)
	}
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if got := string(buf[:n]); got != "hello" {
		t.Errorf("received %q, want hello", got)
	}
	if from.Addr().Unmap() != addrA.Addr() {
		t.Errorf("from %v, want %v", from.Addr(), addrA.Addr())
	}
}

func TestIntegrationDoPath(t *testing.T) {
	ns := newNS(t, "tdp")
	inode := func() (uint64, error) {
		fi, err := os.Stat("/proc/thread-self/ns/net")
		if err != nil {
			return 0, err
		}
		return fi.Sys().(*syscall.Stat_t).Ino, nil
	}
	want, err := os.Stat(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	errFn := errors.New("fn failed")
	err = DoPath(ns.Path(), func() error {
		var err error
		got, err = inode()
		return errors.Join(err, errFn)
	})
	if !errors.Is(err, errFn) {
		t.Errorf("DoPath: %v, want fn's error", err)
	}
	if got != want.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("DoPath ran fn in netns inode %d, want %d", got, want.Sys().(*syscall.Stat_t).Ino)
	}
	// "" runs fn in the caller's namespace.
	host, err := inode()
	if err != nil {
		t.Fatal(err)
	}
	if err := DoPath("", func() error { got, err = inode(); return err }); err != nil || got != host {
		t.Errorf(`DoPath(""): inode %d, %v; want %d`, got, err, host)
	}
	if err := DoPath(filepath.Join(t.TempDir(), "none"), func() error { t.Error("fn ran"); return nil }); err == nil {
		t.Error("DoPath(missing path) succeeded")
	}
}
