package regproto_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestEd25519MapsrvKey is finding 9 of issue 17: an NVE's keys file holds
// its own secret and only mapsrv's public key. It verifies mapsrv's signed
// messages, but can forge none: not with its own key, not by using the
// public key as an HMAC secret.
func TestEd25519MapsrvKey(t *testing.T) {
	priv, pub, err := regproto.NewSigningKey("mapsrv")
	if err != nil {
		t.Fatal(err)
	}
	secA, _ := regproto.NewSecret()
	secB, _ := regproto.NewSecret()
	mapsrvKeys := regproto.KeyFile{1: priv, 2: {NVE: "nve-a", Secret: secA}, 3: {NVE: "nve-b", Secret: secB}}
	nveA := regproto.KeyFile{1: pub, 2: {NVE: "nve-a", Secret: secA}}
	nveB := regproto.KeyFile{1: pub, 3: {NVE: "nve-b", Secret: secB}}

	// The files round-trip through the text format, and nve-b's holds no
	// secret but its own.
	for name, k := range map[string]regproto.KeyFile{"mapsrv": mapsrvKeys, "nve-a": nveA, "nve-b": nveB} {
		back, err := regproto.ParseKeys(bytes.NewReader(k.Format()))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, k.Format())
		}
		if !bytes.Equal(back.Format(), k.Format()) {
			t.Errorf("%s: format does not round-trip", name)
		}
	}
	if _, _, ok := nveB.Secret(1); ok {
		t.Error("an NVE's file yields a secret for mapsrv's key")
	}
	if strings.Contains(string(nveB.Format()), "mapsrv ed25519:") {
		t.Errorf("an NVE's file holds mapsrv's private key:\n%s", nveB.Format())
	}

	notify := &regproto.Message{Type: regproto.TypeRequest, Notify: true, Seq: 7, Timestamp: time.Now(), KeyID: 1,
		NVE: "mapsrv", VMID: "web", Locator: 0x2001_0db8_0000_0002, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Lifetime: 30}
	signed, err := notify.MarshalSigned(priv.Private)
	if err != nil {
		t.Fatal(err)
	}
	got, err := regproto.Parse(signed, nveA)
	if err != nil {
		t.Fatalf("nve-a refuses mapsrv's signed notification: %v", err)
	}
	if got.VMID != "web" || !got.Notify || got.Locator != ila.Locator(0x2001_0db8_0000_0002) || got.KeyID != 1 {
		t.Errorf("parsed %+v", got)
	}
	if _, err := regproto.ParseUnauthenticated(signed); err != nil {
		t.Errorf("ParseUnauthenticated of a signed message: %v", err)
	}
	tampered := bytes.Clone(signed)
	tampered[40] ^= 1
	if _, err := regproto.Parse(tampered, nveA); !errors.Is(err, regproto.ErrAuth) {
		t.Errorf("tampered signed message: %v, want ErrAuth", err)
	}
	// nve-b tries to forge a notification to nve-a as mapsrv: with the
	// public key as an HMAC secret under mapsrv's key id...
	forged, err := notify.Marshal(pub.Public)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regproto.Parse(forged, nveA); !errors.Is(err, regproto.ErrUnknownKey) {
		t.Errorf("HMAC with mapsrv's public key: %v, want ErrUnknownKey", err)
	}
	// ...or signed by its own key: nve-a does not know it at all.
	own := *notify
	own.KeyID = 3
	b, err := own.Marshal(secB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regproto.Parse(b, nveA); !errors.Is(err, regproto.ErrUnknownKey) {
		t.Errorf("notification signed by nve-b's key: %v, want ErrUnknownKey", err)
	}
	// A signature where an HMAC key is expected is refused too.
	req := &regproto.Message{Type: regproto.TypeRequest, Seq: 1, Timestamp: time.Now(), KeyID: 2, NVE: "nve-a", Lifetime: 30}
	otherPriv, _, _ := regproto.NewSigningKey("nve-a")
	b, err = req.MarshalSigned(otherPriv.Private)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regproto.Parse(b, mapsrvKeys); !errors.Is(err, regproto.ErrUnknownKey) {
		t.Errorf("signature under an HMAC key id: %v, want ErrUnknownKey", err)
	}
}

// TestEd25519ServerReplies runs a Server that signs with mapsrv's Ed25519
// key and a Client that holds only the public key.
func TestEd25519ServerReplies(t *testing.T) {
	priv, pub, err := regproto.NewSigningKey("mapsrv")
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := regproto.NewSecret()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("udp6 loopback: %v", err)
	}
	srv := &regproto.Server{Conn: conn, Keys: regproto.KeyFile{1: priv, 2: {NVE: "nve-a", Secret: sec}}, KeyID: 1, PrivateKey: priv.Private,
		Handler: regproto.HandlerFunc(func(ctx context.Context, from netip.AddrPort, req *regproto.Message) *regproto.Message {
			return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
		})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := &regproto.Client{Server: conn.LocalAddr().(*net.UDPAddr).AddrPort(), KeyID: 2, Secret: sec, Keys: regproto.KeyFile{1: pub, 2: {NVE: "nve-a", Secret: sec}}, ServerKeyID: 1}
	defer c.Close()
	rep, err := c.Do(t.Context(), &regproto.Message{NVE: "nve-a", VMID: "web", Lifetime: 30})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if !rep.Status.Accepted() || rep.KeyID != 1 {
		t.Errorf("reply %+v", rep)
	}
}
