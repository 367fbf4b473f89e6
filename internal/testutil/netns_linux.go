package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/owner"
)

// Suffix returns a short random hex string for names unique to a test run
// (interface names must stay within 15 bytes).
func Suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NetNS is a named network namespace (bind-mounted under /var/run/netns)
// created for one test. Use Do to run code inside it; sockets and netlink
// handles opened inside stay bound to it and may be used from any goroutine.
type NetNS struct {
	Name string
	Path string
	ns   *netns.NS
}

// NewNetNS creates a named network namespace called name (make it unique,
// e.g. with Suffix) with loopback up, and deletes it when the test ends.
// The test goroutine's own namespace never changes.
//
// The namespace is recorded as this process's (internal/owner) before it
// is made, so that if the test dies before its cleanup (a timeout, a
// kill), the next test that makes one, or `ilalab down --all`, removes it;
// and NewNetNS first removes what dead test processes left that way.
func NewNetNS(t testing.TB, name string) *NetNS {
	t.Helper()
	SweepStale(t)
	if err := (owner.Registry{}).Claim(owner.Netns, name, ""); err != nil {
		SkipIfPermission(t, "record netns "+name, err)
	}
	ns, err := netns.New(name)
	if err != nil {
		_ = (owner.Registry{}).Release(owner.Netns, name)
		SkipIfPermission(t, "create netns "+name, err)
	}
	n := &NetNS{Name: name, Path: ns.Path(), ns: ns}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
			return
		}
		if err := (owner.Registry{}).Release(owner.Netns, name); err != nil {
			t.Error(err)
		}
	})
	h := n.Handle(t)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("netns %s: lo: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("netns %s: lo up: %v", name, err)
	}
	return n
}

// Fd is the namespace file descriptor (valid until the test ends).
func (n *NetNS) Fd() int { return n.ns.Fd() }

// Do runs fn on a locked OS thread switched into the namespace.
func (n *NetNS) Do(fn func() error) error { return n.ns.Do(fn) }

// Handle returns a netlink handle bound to the namespace, closed when the
// test ends.
func (n *NetNS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := n.ns.Handle()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// Sysctl writes value to /proc/sys/<key> (key like "net/ipv6/conf/all/forwarding")
// inside the namespace.
func (n *NetNS) Sysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// Veth creates a veth pair: name a in namespace na, name b in nb. Both ends
// are set up. The pair goes away with the namespaces.
func Veth(t testing.TB, na *NetNS, a string, nb *NetNS, b string) (la, lb netlink.Link) {
	t.Helper()
	ha, hb := na.Handle(t), nb.Handle(t)
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a},
		PeerName:      b,
		PeerNamespace: netlink.NsFd(nb.Fd()),
	}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", a, b, err)
	}
	var err error
	if la, err = ha.LinkByName(a); err != nil {
		t.Fatalf("veth %s: %v", a, err)
	}
	if lb, err = hb.LinkByName(b); err != nil {
		t.Fatalf("veth %s: %v", b, err)
	}
	if err := ha.LinkSetUp(la); err != nil {
		t.Fatalf("veth %s up: %v", a, err)
	}
	if err := hb.LinkSetUp(lb); err != nil {
		t.Fatalf("veth %s up: %v", b, err)
	}
	return la, lb
}

// WaitOperUp waits (up to 5 s) until the named links in ns are
// operationally up. A new veth's carrier reaches the qdisc layer through
// linkwatch, which may delay it by up to a second; frames sent before are
// dropped.
func WaitOperUp(t testing.TB, ns *NetNS, names ...string) {
	t.Helper()
	h := ns.Handle(t)
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range names {
		for {
			l, err := h.LinkByName(n)
			if err != nil {
				t.Fatalf("link %s in %s: %v", n, ns.Name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("link %s in %s: operstate %s after 5s", n, ns.Name, l.Attrs().OperState)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
