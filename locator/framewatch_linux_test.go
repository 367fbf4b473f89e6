//go:build linux

package locator_test

import (
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
	"golang.org/x/sys/unix"
)

// TestIntegrationCommitOnFrame prepares a task on a real port (a veth in
// an NVE namespace, NetlinkPorts) and sends frames from the task's end: a
// router solicitation from a link-local address leaves it prepared, QEMU's
// RARP announce commits it, stamped with the kernel's arrival time.
func TestIntegrationCommitOnFrame(t *testing.T) {
	testutil.Privileged(t)
	sfx := testutil.Suffix()
	nveNS, taskNS := testutil.NewNetNS(t, "fwn-"+sfx), testutil.NewNetNS(t, "fwt-"+sfx)
	_, eth0 := testutil.Veth(t, nveNS, "p-web", taskNS, "eth0")
	ns, err := netns.Open(nveNS.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ports, err := locator.NewNetlinkPorts(ns, ila.MAC{0x02, 0x11, 0xa0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	testutil.WaitOperUp(t, taskNS, "eth0")

	var fd int
	if err := taskNS.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	web := spec("web", "p-web", 0x1001)
	copy(web.MAC[:], eth0.Attrs().HardwareAddr)
	send := func(frame []byte) {
		t.Helper()
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: eth0.Attrs().Index, Halen: 6}); err != nil {
			t.Fatal(err)
		}
	}

	dp, src := locatortest.NewDatapath(), locatortest.NewSource()
	src.SetDomain(dom)
	reg := &locatortest.Registrar{Grant: time.Minute}
	a := newAgent(t, "", dp, src, func(c *locator.Config) { c.Registrar, c.Ports = reg, ports })
	stop := run(t, a)
	defer stop()
	for i := 0; !a.Stats().Synced; i++ {
		if i > 5000 {
			t.Fatal("agent not synced")
		}
		time.Sleep(time.Millisecond)
	}
	if err := a.Prepare(t.Context(), web); err != nil {
		t.Fatal(err)
	}
	ll := [16]byte{0xfe, 0x80, 15: 9}
	send(eth(web.MAC, 0x86dd, ipv6(ll, [16]byte{0xff, 0x02, 15: 2}, 58, []byte{133, 0, 0, 0, 0, 0, 0, 0})))
	time.Sleep(200 * time.Millisecond)
	if s := state(t, a, "web"); s.State != locator.StatePrepared || len(reg.Registrations()) != 0 {
		t.Fatalf("after a router solicitation: %s, %d registrations; want prepared, none", s.State, len(reg.Registrations()))
	}
	sent := time.Now()
	send(eth(web.MAC, 0x8035, make([]byte, 28)))
	deadline := time.Now().Add(5 * time.Second)
	for len(reg.Registrations()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s := state(t, a, "web")
	if s.State != locator.StateActive || s.CommittedBy != locator.CommitByFrame || len(reg.Registrations()) == 0 {
		t.Fatalf("after the RARP announce: %+v, %d registrations", s, len(reg.Registrations()))
	}
	if s.FirstFrame.Before(sent.Add(-time.Second)) || s.FirstFrame.After(s.CommittedAt) {
		t.Errorf("first frame at %v: not between the send (%v) and the commit (%v)", s.FirstFrame, sent, s.CommittedAt)
	}
	t.Logf("commit %v after the frame's arrival", s.CommittedAt.Sub(s.FirstFrame))
}
