package regproto_test

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

func Example() {
	keys, err := regproto.ParseKeys(strings.NewReader(`
# <keyid> <nve-name> <hex-secret>
7  nve-a  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
99 mapsrv 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f
`))
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
