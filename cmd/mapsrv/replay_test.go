package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestRunReplayAfterRestart captures a claim nve1 sends, lets nve2 take
// the task, restarts mapsrv and replays the capture within the timestamp
// window: it is refused and the task stays at nve2. nve1 itself (its
// client and counter) goes on registering after the restart.
func TestRunReplayAfterRestart(t *testing.T) {
	dir, err := os.MkdirTemp("", "mapsrv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keysFile := filepath.Join(dir, "keys")
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: bytes.Repeat([]byte{1}, 32)},
		2: {NVE: "nve1", Secret: bytes.Repeat([]byte{2}, 32)},
		3: {NVE: "nve2", Secret: bytes.Repeat([]byte{3}, 32)},
	}
	if err := os.WriteFile(keysFile, keys.Format(), 0o600); err != nil {
		t.Fatal(err)
	}
	api, reg := freePort(t, "tcp"), freePort(t, "udp")
	// A short in-flight time, so that moving the task back is allowed by
	// the time the capture is replayed.
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--api-addr", api, "--reg-addr", reg, "--keys", keysFile, "--in-flight", "1s"}
	stop := start(t, api, args...)
	ac := newClient(t, api, "")
	setup(t, ac, ila.CsumNeutralMap)
	if _, err := ac.AddNVE(t.Context(), mapsrv.NVERecord{NVE: ila.NVE{Name: "nve2", Locators: []ila.Locator{0xfd00000000000002}, Underlay: netip.MustParseAddr("fd99::2")}}); err != nil {
		t.Fatal(err)
	}
	regAddr := netip.MustParseAddrPort(reg)
	claim := &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::7")}, Lifetime: 100}

	// nve1's claim, as an eavesdropper on the underlay captures it.
	nve1 := &regproto.Client{Server: regAddr, KeyID: 2, Secret: keys[2].Secret, Keys: keys, ServerKeyID: 1}
	defer nve1.Close()
	if rep, err := nve1.Do(t.Context(), claim); err != nil || rep.Err() != nil {
		t.Fatalf("nve1 claim: %+v, %v", rep, err)
	}
	m := *claim
	m.Type, m.KeyID, m.Timestamp = regproto.TypeRequest, 2, time.Now()
	m.Seq = uint64(time.Now().UnixNano())
	captured, err := m.Marshal(keys[2].Secret)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func() *regproto.Message {
		t.Helper()
		if _, err := conn.WriteToUDPAddrPort(captured, regAddr); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, regproto.MaxMessageLen)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		rep, err := regproto.Parse(buf[:n], keys)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := send(); rep.Err() != nil {
		t.Fatalf("captured claim, first time: %+v", rep)
	}
	// nve2 takes the task (as its expected standby: a claim needs a
	// justification, docs/registration.md section 7.4).
	if _, err := ac.Expect(t.Context(), "t1", "vm1", mapsrv.ExpectBody{NVE: "nve2"}); err != nil {
		t.Fatalf("expect vm1 on nve2: %v", err)
	}
	nve2 := &regproto.Client{Server: regAddr, KeyID: 3, Secret: keys[3].Secret, Keys: keys, ServerKeyID: 1}
	defer nve2.Close()
	sb := *claim
	sb.Role = regproto.RoleStandby
	if rep, err := nve2.Do(t.Context(), &sb); err != nil || rep.Err() != nil {
		t.Fatalf("nve2 standby: %+v, %v", rep, err)
	}
	if rep, err := nve2.Do(t.Context(), claim); err != nil || rep.Err() != nil {
		t.Fatalf("nve2 claim: %+v, %v", rep, err)
	}

	stop()
	time.Sleep(time.Second)
	start(t, api, args...)
	if rep := send(); rep.Status != regproto.StatusRejected || rep.Reason != regproto.ReasonReplay {
		t.Errorf("captured claim replayed after the restart: %v/%v, want rejected/replay", rep.Status, rep.Reason)
	}
	if rec, err := ac.Task(t.Context(), "t1", "vm1"); err != nil || rec.NVE != "nve2" {
		t.Errorf("task after the replay: %+v, %v; want it at nve2", rec, err)
	}
	// nve1 is not locked out: its next request, from the same client and
	// counter, is accepted (after one resynchronisation).
	if rep, err := nve1.Do(t.Context(), &regproto.Message{VMID: "vm2", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::8")}, Lifetime: 100}); err != nil || rep.Err() != nil {
		t.Errorf("nve1 after the restart: %+v, %v", rep, err)
	}
}
