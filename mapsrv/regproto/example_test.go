package regproto_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// docKeys are the keys of the examples in docs/registration.md section 10,
// in the keys file format of section 6: the key of NVE nve-a (id 7) and the
// key of the mapping service (id 99).
const docKeys = `
# <keyid> <nve-name> <hex-secret>
7  nve-a  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
99 mapsrv 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f
`

func Example() {
	keys, err := regproto.ParseKeys(strings.NewReader(docKeys))
	if err != nil {
		fmt.Println(err)
		return
	}
	req := &regproto.Message{
		Type: regproto.TypeRequest, Seq: 1, Timestamp: time.Unix(1796040000, 0), KeyID: 7,
		VMID: "web-1", Tenant: "acme", Addrs: []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1")},
		Lifetime: regproto.LifetimeUnits(5 * time.Minute),
	}
	b, err := req.Marshal(keys[7].Secret)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := regproto.Parse(b, keys)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(b), m.Type, m.VMID, m.Tenant, m.Addrs, m.LifetimeDuration())

	b[len(b)-1] ^= 1 // corrupt the HMAC
	_, err = regproto.Parse(b, keys)
	fmt.Println(err)
	// Output:
	// 97 request web-1 acme [3333::1:2000:0:0:1] 5m0s
	// key id 7: registration message authentication failed
}

// An NVE builds and signs a Registration Request. These are the bytes of
// docs/registration.md section 10.1: an implementation in another language
// can test its encoder and its HMAC against them.
func ExampleMessage_Marshal() {
	keys, err := regproto.ParseKeys(strings.NewReader(docKeys))
	if err != nil {
		fmt.Println(err)
		return
	}
	loc, err := ila.ParseLocator("2001:db8:1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	req := &regproto.Message{
		Type: regproto.TypeRequest,
		// A sender starts its sequence numbers at its clock in nanoseconds
		// and counts up (regproto.Client does this for you).
		Seq:       1795953600000000001,
		Timestamp: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		KeyID:     7, // the NVE's own key
		NVE:       "nve-a",
		VMID:      "web-1",
		Tenant:    "acme",
		MAC:       ila.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01},
		Addrs:     []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1"), netip.MustParseAddr("10.0.0.1")},
		Locator:   loc,
		Lifetime:  regproto.LifetimeUnits(5 * time.Minute), // suggested; mapsrv grants this or less
	}
	b, err := req.Marshal(keys[7].Secret)
	if err != nil {
		fmt.Println(err)
		return
	}
	for off := 0; off < len(b); off += 16 {
		fmt.Printf("%04x  % x\n", off, b[off:min(off+16, len(b))])
	}
	// Output:
	// 0000  01 01 00 00 00 80 00 00 18 ec 82 48 a9 15 80 01
	// 0010  18 ec d0 dd 3a 64 80 00 00 00 00 07 0b 05 6e 76
	// 0020  65 2d 61 02 05 77 65 62 2d 31 07 04 61 63 6d 65
	// 0030  01 06 02 00 00 00 00 01 03 10 33 33 00 00 00 00
	// 0040  00 01 20 00 00 00 00 00 00 01 04 04 0a 00 00 01
	// 0050  0a 08 20 01 0d b8 00 01 00 00 05 02 00 4b 7f 20
	// 0060  56 f7 5d 26 bb 25 6c 01 09 a4 86 a8 53 25 f6 ad
	// 0070  58 bd 04 11 cd 5d 81 5b b9 01 1e 70 5d a6 59 ca
}

// An NVE parses and verifies the replies of docs/registration.md sections
// 10.2 (accepted) and 10.3 (rejected) as they arrive from the wire.
func ExampleParse() {
	keys, err := regproto.ParseKeys(strings.NewReader(docKeys))
	if err != nil {
		fmt.Println(err)
		return
	}
	accepted, _ := hex.DecodeString("010200000053000018ec8248a915800118ecd0dd3a8304800000006302057765622d31070461636d650502001e060200007f207cd6c1f6a0caa994adfd4db3d7d780568e5094b1ea3cbd5ccbc7720cf827872b")
	rejected, _ := hex.DecodeString("010200000053000018ec8248a915800218ecd0dd75ff4a000000006302057765622d31070461636d6505020000060280067f20b3f3b797b9404ba39121b29a4bc42d5c59920010d106227a4bc5d5251163493f")

	// Parse checks the structure and the HMAC with the key the header
	// names. The rest is the receiver's: a reply, signed by the mapping
	// service's key, with the sequence number of a request it sent.
	rep, err := regproto.Parse(accepted, keys)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Type, rep.KeyID, rep.Seq, rep.VMID, rep.Status, rep.LifetimeDuration(), rep.Err())

	rep, err = regproto.Parse(rejected, keys)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Status, rep.Reason, errors.Is(rep.Err(), regproto.ErrRejected))

	// One changed bit anywhere: the HMAC does not verify.
	bad := append([]byte(nil), accepted...)
	bad[0x25] ^= 0x20
	_, err = regproto.Parse(bad, keys)
	fmt.Println(errors.Is(err, regproto.ErrAuth), err)

	// A key id the receiver does not have (here: only the NVE's own key).
	_, err = regproto.Parse(accepted, regproto.KeyFile{7: keys[7]})
	fmt.Println(errors.Is(err, regproto.ErrUnknownKey), errors.Is(err, regproto.ErrAuth))

	// Not a message at all.
	_, err = regproto.Parse([]byte("hello"), keys)
	fmt.Println(errors.Is(err, regproto.ErrMalformed), err)
	// Output:
	// reply 99 1795953600000000001 web-1 accepted 2m0s <nil>
	// rejected duplicate (flap damped) true
	// true key id 99: registration message authentication failed
	// true true
	// true 5 bytes, header needs 28: truncated registration message
}

// A mapping service answers Registration Requests with a Handler; an NVE
// registers with a Client. Both run here over loopback UDP.
func ExampleServer() {
	keys, err := regproto.ParseKeys(strings.NewReader(docKeys))
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	srv := &regproto.Server{
		Conn: conn, Keys: keys, KeyID: 99, Secret: keys[99].Secret,
		// Handle sees only authenticated requests that passed the replay
		// window; req.NVE is the name of the key's owner.
		Handler: regproto.HandlerFunc(func(ctx context.Context, from netip.AddrPort, req *regproto.Message) *regproto.Message {
			if req.VMID == "" || len(req.Addrs) == 0 {
				return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
			}
			rep := req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
			rep.Lifetime = min(req.Lifetime, regproto.LifetimeUnits(2*time.Minute)) // grant at most 2 minutes
			return rep
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Println(err)
		}
	}()

	cli := &regproto.Client{
		Server: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		KeyID:  7, Secret: keys[7].Secret, // sign with the NVE's key
		Keys: keys, ServerKeyID: 99, // accept replies signed by the mapping service's key only
	}
	defer cli.Close()
	rep, err := cli.Do(ctx, &regproto.Message{
		VMID: "web-1", Tenant: "acme", Addrs: []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1")},
		Lifetime: regproto.LifetimeUnits(5 * time.Minute),
	})
	if err != nil { // no valid reply after the retries, or ctx ended
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Status, rep.VMID, rep.LifetimeDuration(), rep.Err())

	rep, err = cli.Do(ctx, &regproto.Message{Tenant: "acme", Lifetime: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Status, rep.Reason, errors.Is(rep.Err(), regproto.ErrRejected))

	st := srv.Stats()
	fmt.Println(st.Received, st.Accepted, st.Rejected[regproto.ReasonInvalid])
	// Output:
	// accepted web-1 2m0s <nil>
	// rejected invalid request true
	// 2 1 1
}

// An NVE listens for the mapping service's move notifications: requests
// with Notify set, signed by the mapping service's key, that say a task
// moved to Locator. Its Server knows only that key, so nothing else is
// accepted; the NVE signs its replies with its own key.
func ExampleServer_notifications() {
	keys, err := regproto.ParseKeys(strings.NewReader(docKeys))
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	moved := make(chan string, 1)
	nve := &regproto.Server{
		Conn: conn, Keys: regproto.KeyFile{99: keys[99]}, KeyID: 7, Secret: keys[7].Secret,
		Handler: regproto.HandlerFunc(func(ctx context.Context, from netip.AddrPort, req *regproto.Message) *regproto.Message {
			if !req.Notify {
				return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
			}
			// Forward packets in flight for req.Addrs to req.Locator for
			// req.LifetimeDuration(), then forget the task.
			moved <- fmt.Sprintf("%s/%s moved to %s (%s), forward in-flight packets for %s", req.Tenant, req.VMID, req.Locator, req.Mode, req.LifetimeDuration())
			return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nve.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Println(err)
		}
	}()

	// The mapping service's side.
	loc, _ := ila.ParseLocator("2001:db8:2:0")
	notifier := &regproto.Client{
		Server: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		KeyID:  99, Secret: keys[99].Secret, Keys: keys, ServerKeyID: 7,
	}
	defer notifier.Close()
	rep, err := notifier.Do(ctx, &regproto.Message{
		Notify: true, NVE: "mapsrv", VMID: "web-1", Tenant: "acme", Locator: loc, Mode: regproto.MoveHot,
		Addrs: []netip.Addr{netip.MustParseAddr("3333:0:0:1:2000::1")}, Lifetime: regproto.LifetimeUnits(time.Minute),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-moved)
	fmt.Println(rep.Status)

	// Another NVE's key cannot sign a notification: it gets no answer.
	forger := &regproto.Client{
		Server: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		KeyID:  7, Secret: keys[7].Secret, Keys: keys, ServerKeyID: 7,
		Timeout: 50 * time.Millisecond, Retries: -1,
	}
	defer forger.Close()
	_, err = forger.Do(ctx, &regproto.Message{Notify: true, VMID: "web-1", Tenant: "acme", Locator: loc, Lifetime: 15})
	fmt.Println(errors.Is(err, regproto.ErrTimeout))
	// Output:
	// acme/web-1 moved to 2001:db8:2:0 (hot), forward in-flight packets for 1m0s
	// accepted
	// true
}
