package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *NetConf // nil: an error with code
		code uint
	}{
		{name: "minimal mapsrv", in: `{"cniVersion":"1.1.0","name":"ila","type":"ila-cni","mapsrv":{"url":"http://[fd00::2]:8080"}}`,
			want: &NetConf{PluginConf: types.PluginConf{CNIVersion: "1.1.0", Name: "ila", Type: "ila-cni"}, Mapsrv: MapsrvConf{URL: "http://[fd00::2]:8080"},
				Tenant: "default", TaskName: "pod", Address: addrMapsrv, DataDir: defaultDataDir}},
		{name: "ipam by default with an ipam section", in: `{"name":"n","type":"ila-cni","ipam":{"type":"host-local"},"tenant":"blue","task_name":"container-id","mtu":1400,"data_dir":"/tmp/x","nve_netns":"/var/run/netns/a"}`,
			want: &NetConf{PluginConf: types.PluginConf{Name: "n", Type: "ila-cni", IPAM: types.IPAM{Type: "host-local"}},
				Tenant: "blue", TaskName: "container-id", Address: addrIPAM, MTU: 1400, DataDir: "/tmp/x", NVENetns: "/var/run/netns/a"}},
		{name: "prev by default when chained", in: `{"name":"n","prevResult":{"cniVersion":"1.1.0"}}`,
			want: &NetConf{PluginConf: types.PluginConf{Name: "n", RawPrevResult: map[string]any{"cniVersion": "1.1.0"}}, Tenant: "default", TaskName: "pod", Address: addrPrev, DataDir: defaultDataDir}},
		{name: "not json", in: `{"name":`, code: types.ErrDecodingFailure},
		{name: "no name", in: `{"mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "slash in name", in: `{"name":"a/b","mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "mapsrv without url", in: `{"name":"n"}`, code: types.ErrInvalidNetworkConfig},
		{name: "mapsrv url not http", in: `{"name":"n","mapsrv":{"url":"fd00::2"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad address source", in: `{"name":"n","address":"dhcp"}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipam without type", in: `{"name":"n","address":"ipam"}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad task_name", in: `{"name":"n","task_name":"uid","mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "tenant with space", in: `{"name":"n","tenant":"a b","mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "small mtu", in: `{"name":"n","mtu":576,"mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "relative data dir", in: `{"name":"n","data_dir":"x","mapsrv":{"url":"http://a:1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "release without mapsrv", in: `{"name":"n","ipam":{"type":"static"},"release_on_del":true}`, code: types.ErrInvalidNetworkConfig},
		{name: "wrong type", in: `{"name":"n","mtu":"big"}`, code: types.ErrDecodingFailure},
		{name: "ipv4 tenant", in: `{"name":"n","tenant":"v4","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":100,"subnet":"10.100.0.9/24","gateway":"10.100.0.1"},"args":{"cni":{"ila_task":"vm1","ila_prepare":true}}}`,
			want: &NetConf{PluginConf: types.PluginConf{Name: "n"}, Mapsrv: MapsrvConf{URL: "http://a:1"}, Tenant: "v4", TaskName: "pod", Address: addrMapsrv, DataDir: defaultDataDir,
				IPv4: &IPv4Conf{VNI: 100, Subnet: netip.MustParsePrefix("10.100.0.0/24"), Gateway: netip.MustParseAddr("10.100.0.1"), Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
				Args: &struct {
					CNI AttachArgs `json:"cni"`
				}{AttachArgs{Task: "vm1", Prepare: true}}}},
		{name: "ipv4 without mapsrv", in: `{"name":"n","ipam":{"type":"static"},"ipv4":{"vni":1,"subnet":"10.0.0.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 without vni", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"subnet":"10.0.0.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 vni too large", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":268435456,"subnet":"10.0.0.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 subnet v6", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"fd00::/64"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 subnet /31", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"10.0.0.0/31"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 gateway outside", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 routes without gateway", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"10.0.0.0/24","routes":["0.0.0.0/0"]}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 route v6", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"10.0.0.0/24","gateway":"10.0.0.1","routes":["::/0"]}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv4 bad subnet", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":1,"subnet":"ten"}}`, code: types.ErrDecodingFailure},
		{name: "bad ila_task", in: `{"name":"n","mapsrv":{"url":"http://a:1"},"args":{"cni":{"ila_task":"a/b"}}}`, code: types.ErrInvalidNetworkConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConf([]byte(tc.in))
			if tc.want == nil {
				var ce *types.Error
				if !errors.As(err, &ce) || ce.Code != tc.code {
					t.Fatalf("parseConf: %v, want a CNI error with code %d", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTaskName(t *testing.T) {
	pod := &NetConf{TaskName: "pod"}
	cid := &NetConf{TaskName: "container-id"}
	for _, tc := range []struct {
		conf      *NetConf
		id, args  string
		want      string
		wantError bool
	}{
		{pod, "c1", "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;IgnoreUnknown=1", "prod_web-0", false},
		{pod, "c1", "K8S_POD_NAME=web-0", "c1", false},
		{pod, "c1", "", "c1", false},
		{cid, "c1", "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0", "c1", false},
		{pod, "c1", "novalue", "", true},
		{pod, "c 1", "", "", true},
		{pod, "c1", "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b/c", "", true},
		{pod, strings.Repeat("x", 254), "", "", true},
		{pod, "c1", "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=virt-launcher-vm1-target;ILA_TASK=prod_vm1", "prod_vm1", false},
		{pod, "c1", "ILA_TASK=a/b", "", true},
		{pod, "c1", "ILA_PREPARE=maybe", "", true},
	} {
		got, err := tc.conf.taskName(tc.id, tc.args)
		if (err != nil) != tc.wantError || got != tc.want {
			t.Errorf("taskName(%q, %q) = %q, %v; want %q (error %v)", tc.id, tc.args, got, err, tc.want, tc.wantError)
		}
	}
}

func TestHostIfname(t *testing.T) {
	a := hostIfname("net", "c1", "eth0")
	if len(a) != 15 || !strings.HasPrefix(a, "ila") || a != hostIfname("net", "c1", "eth0") {
		t.Fatalf("hostIfname = %q: want 15 characters, stable", a)
	}
	for _, o := range []string{hostIfname("net2", "c1", "eth0"), hostIfname("net", "c2", "eth0"), hostIfname("net", "c1", "eth1")} {
		if o == a {
			t.Errorf("hostIfname collides: %q", o)
		}
	}
}

// FuzzParseConf: any input gives a config that passes its own checks or a
// CNI error, never a panic.
func FuzzParseConf(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"ila","type":"ila-cni","mapsrv":{"url":"http://[fd00::2]:8080"}}`,
		`{"name":"n","ipam":{"type":"host-local","ranges":[[{"subnet":"fd00::/64"}]]},"mtu":1400}`,
		`{"name":"n","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"fd00::1/128"}]}}`,
		`{"name":"n","cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]}`,
		`{"name":"n","mapsrv":{"url":"http://a:1"},"ipv4":{"vni":100,"subnet":"10.0.0.0/24","gateway":"10.0.0.1","routes":["0.0.0.0/0"]},"args":{"cni":{"ila_task":"a_b","ila_prepare":true}}}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConf(b)
		if err != nil {
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code == 0 {
				t.Fatalf("error %v is not a CNI error with a code", err)
			}
			return
		}
		if c.Name == "" || c.DataDir == "" || c.Tenant == "" || (c.Address != addrMapsrv && c.Address != addrIPAM && c.Address != addrPrev) {
			t.Fatalf("accepted config %+v misses a default", c)
		}
		if c.Address == addrMapsrv && c.Mapsrv.URL == "" {
			t.Fatalf("accepted mapsrv address source without URL")
		}
		if v := c.IPv4; v != nil && (c.Address != addrMapsrv || v.VNI == 0 || !v.Subnet.Addr().Is4() || v.Gateway.IsValid() != (len(v.Routes) > 0)) {
			t.Fatalf("accepted ipv4 section %+v (address %q)", v, c.Address)
		}
	})
}

func TestAttachArgs(t *testing.T) {
	conf := &NetConf{Args: &struct {
		CNI AttachArgs `json:"cni"`
	}{AttachArgs{Task: "ns_vm1", Prepare: true}}}
	for _, tc := range []struct {
		conf *NetConf
		args string
		want AttachArgs
	}{
		{&NetConf{}, "", AttachArgs{}},
		{&NetConf{}, "ILA_PREPARE=true;ILA_TASK=ns_vm1", AttachArgs{Task: "ns_vm1", Prepare: true}},
		{&NetConf{}, "ILA_PREPARE=1", AttachArgs{Prepare: true}},
		{conf, "", AttachArgs{Task: "ns_vm1", Prepare: true}},
		{conf, "ILA_PREPARE=false", AttachArgs{Task: "ns_vm1"}}, // CNI_ARGS win
	} {
		got, err := tc.conf.attachArgs(tc.args)
		if err != nil {
			t.Fatalf("attachArgs(%q): %v", tc.args, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("attachArgs(%q) (-want +got):\n%s", tc.args, diff)
		}
	}
}
