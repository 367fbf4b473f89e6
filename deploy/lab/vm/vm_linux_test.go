//go:build linux

package vm

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testImage builds (or reuses) the guest image in a cache that outlives
// the test (the kernel package is ~70 MB); ILAMESH_VM_CACHE overrides it.
func testImage(t *testing.T) Image {
	t.Helper()
	testutil.NeedTools(t, "qemu-system-x86_64", "dpkg-deb")
	dir := os.Getenv("ILAMESH_VM_CACHE")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Skipf("no cache dir for the guest image: %v", err)
		}
		dir = filepath.Join(c, "ilamesh", "vm")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	img, err := BuildImage(ctx, dir, func(s string) { t.Log(s) })
	if err != nil {
		t.Skipf("no guest image (needs busybox-static and the %s package from apt): %v", KernelPackage, err)
	}
	return img
}

// host is a network namespace standing for an NVE.
type host struct {
	ns *netns.NS
	h  *netlink.Handle
}

func newHost(t *testing.T, name string) host {
	t.Helper()
	tn := testutil.NewNetNS(t, name)
	ns, err := netns.Open(tn.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return host{ns: ns, h: tn.Handle(t)}
}

// portUp waits for QEMU's tap and gives it the NVE side's addresses.
func (h host) portUp(t *testing.T, tap string, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var l netlink.Link
	var err error
	for {
		if l, err = h.h.LinkByName(tap); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap %s: %v", tap, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		na := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}, Flags: unix.IFA_F_NODAD}
		if err := h.h.AddrAdd(l, na); err != nil {
			t.Fatalf("tap %s: add %s: %v", tap, a, err)
		}
	}
	if err := h.h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// ping sends ICMPv6 echo requests from h to dst until one is answered.
func (h host) ping(t *testing.T, dst netip.Addr, timeout time.Duration) {
	t.Helper()
	var c net.Conn
	if err := h.ns.Do(func() error {
		var err error
		c, err = net.Dial("ip6:ipv6-icmp", dst.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for seq := 1; time.Now().Before(deadline); seq++ {
		req := []byte{128, 0, 0, 0, 0x12, 0x34, byte(seq >> 8), byte(seq)}
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b := make([]byte, 1500)
		for {
			n, err := c.Read(b)
			if err != nil {
				break
			}
			if n >= 8 && b[0] == 129 && binary.BigEndian.Uint16(b[6:]) == uint16(seq) {
				return
			}
		}
	}
	t.Fatalf("no echo reply from %s in %v", dst, timeout)
}

// echo checks the guest's TCP echo responder from h.
func (h host) echo(t *testing.T, dst netip.Addr, msg string) {
	t.Helper()
	var c net.Conn
	if err := h.ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp6", netip.AddrPortFrom(dst, EchoPort).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("tcp echo %s: %v", dst, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("tcp echo %s: got %q, %v; want %q", dst, got, err, msg)
	}
}

// firstFrame opens a packet socket on ifname in h and returns a channel
// that gets the first frame the guest sends (incoming on the tap).
func (h host) firstFrame(t *testing.T, ifname string) <-chan []byte {
	t.Helper()
	l, err := h.h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := h.ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(30 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	ch := make(chan []byte, 1)
	go func() {
		defer unix.Close(fd)
		b := make([]byte, 2048)
		for {
			n, from, err := unix.Recvfrom(fd, b, 0)
			if err != nil {
				close(ch)
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			ch <- append([]byte(nil), b[:n]...)
			return
		}
	}()
	return ch
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestIntegrationMigrate boots a TCG guest with a tap in one namespace,
// live-migrates it to an incoming QEMU in another over a unix socket, and
// checks that the same guest (its TCP responder still running) answers
// there and announced itself on the new tap first.
func TestIntegrationMigrate(t *testing.T) {
	testutil.Privileged(t)
	img := testImage(t)
	sfx := testutil.Suffix()
	a, b := newHost(t, "vma-"+sfx), newHost(t, "vmb-"+sfx)
	mac := ila.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	guest := netip.MustParsePrefix("2001:db8::5/64")
	dir := t.TempDir()
	cfg := Config{Name: "src", Image: img, NS: a.ns, Tap: "vmtap0", MAC: mac, Net: Net{Addr: guest}, Dir: filepath.Join(dir, "src")}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	src, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Kill)
	a.portUp(t, "vmtap0", "fe80::1/64", "2001:db8::1/64")
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	a.ping(t, guest.Addr(), 10*time.Second)
	a.echo(t, guest.Addr(), "before")

	dcfg := cfg
	dcfg.Name, dcfg.NS, dcfg.Dir, dcfg.Incoming = "dst", b.ns, filepath.Join(dir, "dst"), true
	dst, err := Start(ctx, dcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dst.Kill)
	b.portUp(t, "vmtap0", "fe80::1/64", "2001:db8::1/64")
	first := b.firstFrame(t, "vmtap0")
	if s, err := dst.Monitor().Status(ctx); err != nil || s.Running {
		t.Fatalf("incoming QEMU before migration: %+v, %v; want not running", s, err)
	}

	// Another process (ilalab demo after ilalab up) takes over the source.
	src.Close()
	if src, err = Open(ctx, cfg, src.PID()); err != nil {
		t.Fatal(err)
	}
	m, err := src.Migrate(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migration: total %v, downtime %v, setup %v; guest stopped %s, resumed %s",
		m.TotalTime, m.Downtime, m.SetupTime, m.Stopped.Format(time.StampMicro), m.Resumed.Format(time.StampMicro))
	if m.TotalTime <= 0 || m.Resumed.Before(m.Stopped) || m.Completed.Before(m.Started) {
		t.Errorf("implausible migration figures: %+v", m)
	}
	select {
	case f, ok := <-first:
		if !ok {
			t.Fatal("no frame from the guest on the destination tap")
		}
		if len(f) < 14 || net.HardwareAddr(f[6:12]).String() != mac.String() {
			t.Errorf("first frame on the destination tap is not from the guest: % x", f[:min(len(f), 14)])
		} else if et := binary.BigEndian.Uint16(f[12:]); et != 0x8035 {
			t.Logf("first frame from the guest: ethertype %#04x (not QEMU's RARP announce)", et)
		}
	case <-ctx.Done():
		t.Fatal("no frame from the guest on the destination tap")
	}
	for q, want := range map[*QEMU]bool{src: false, dst: true} {
		s, err := q.Monitor().Status(ctx)
		if err != nil || s.Running != want {
			t.Errorf("%s after migration: %+v, %v; want running=%v", q.cfg.Name, s, err, want)
		}
	}
	b.ping(t, guest.Addr(), 10*time.Second)
	b.echo(t, guest.Addr(), "after") // the responder started at boot on the source
	if err := src.Quit(ctx); err != nil {
		t.Error(err)
	}
	select {
	case <-src.Exited():
	default:
		t.Error("source QEMU still running after Quit")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "g", Image: Image{"k", "i"}, Tap: "tap0", MAC: ila.MAC{2, 0, 0, 0, 0, 1}, Dir: "/tmp/x", Net: Net{Addr: netip.MustParsePrefix("2001:db8::5/64")}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"name with slash", func(c *Config) { c.Name = "a/b" }},
		{"no image", func(c *Config) { c.Image = Image{} }},
		{"long tap", func(c *Config) { c.Tap = "tap-name-far-too-long" }},
		{"multicast MAC", func(c *Config) { c.MAC = ila.MAC{1, 0, 0, 0, 0, 1} }},
		{"no dir", func(c *Config) { c.Dir = "" }},
		{"IPv4 guest address", func(c *Config) { c.Net.Addr = netip.MustParsePrefix("10.0.0.1/24") }},
		{"IPv6 as IPv4", func(c *Config) { c.Net.IPv4 = netip.MustParsePrefix("2001:db8::1/64") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			if err := c.validate(); err == nil {
				t.Errorf("validate accepted %+v", c)
			}
		})
	}
	c := ok
	if err := c.validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if c.MemoryMB != 128 {
		t.Errorf("default memory %d, want 128", c.MemoryMB)
	}
}
