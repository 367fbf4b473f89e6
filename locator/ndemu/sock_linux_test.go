//go:build linux

package ndemu

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"
)

// TestIntegrationSocketFilter checks what the port socket receives: the
// RS, NS and NA frames a task sends, not RAs, not other IPv6 or IPv4
// frames, and never a frame this host sends out of the port.
func TestIntegrationSocketFilter(t *testing.T) {
	testutil.Privileged(t)
	sfx := testutil.Suffix()
	nve := testutil.NewNetNS(t, "ndf-n-"+sfx)
	tk := testutil.NewNetNS(t, "ndf-t-"+sfx)
	// The task's kernel stays quiet (no DAD, no RS): every frame from the
	// task side is this test's.
	if err := tk.Sysctl("net/ipv6/conf/default/disable_ipv6", "1"); err != nil {
		t.Fatal(err)
	}
	port, eth := testutil.Veth(t, nve, "ndfp"+sfx, tk, "ndft"+sfx)
	testutil.WaitOperUp(t, nve, port.Attrs().Name)
	testutil.WaitOperUp(t, tk, eth.Attrs().Name)

	var c *packetConn
	if err := nve.Do(func() error {
		var err error
		c, err = listenPacket(port.Attrs().Index)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var fd int
	if err := tk.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	taskMAC := eth.Attrs().HardwareAddr
	taskLL := netip.MustParseAddr("fe80::a")
	frame := func(m ndp.Message) []byte {
		t.Helper()
		b, err := buildFrame(taskMAC, taskLL, out{msg: m, dst: allNodes, dstMAC: allNodesMAC})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := func(b []byte) {
		t.Helper()
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: eth.Attrs().Index, Halen: 6}
		if err := unix.Sendto(fd, b, 0, to); err != nil {
			t.Fatalf("send from the task: %v", err)
		}
	}
	recv := func() (byte, error) {
		t.Helper()
		_ = c.f.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2048)
		n, err := c.read(buf)
		if err != nil {
			return 0, err
		}
		if n < ethHeaderLen+ipv6HeaderLen+1 {
			t.Fatalf("received a %d-byte frame", n)
		}
		return buf[ethHeaderLen+ipv6HeaderLen], nil
	}

	ns := &ndp.NeighborSolicitation{TargetAddress: netip.MustParseAddr("fe80::1")}
	na := &ndp.NeighborAdvertisement{TargetAddress: taskLL}
	ra := &ndp.RouterAdvertisement{}
	ipv4 := append(append(append([]byte{}, allNodesMAC...), taskMAC...), 0x08, 0x00, 0x45, 0, 0, 20)
	ipv4 = append(ipv4, make([]byte, 40)...)
	send(frame(ra))
	send(ipv4)
	send(frame(&ndp.RouterSolicitation{}))
	// What the NVE sends out of the port is not input, ND or not.
	if err := c.write(frame(ns)); err != nil {
		t.Fatalf("send from the NVE: %v", err)
	}
	send(frame(ns))
	send(frame(na))
	for _, want := range []byte{133, 135, 136} {
		got, err := recv()
		if err != nil {
			t.Fatalf("want ICMPv6 type %d: %v", want, err)
		}
		if got != want {
			t.Errorf("received ICMPv6 type %d, want %d", got, want)
		}
	}
	if got, err := recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after the ND frames: type %d, %v; want nothing", got, err)
	}
}
