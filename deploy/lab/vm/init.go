package vm

import (
	"fmt"
	"net/netip"
	"strings"
)

// Modules are the kernel modules the guest needs for its virtio-net NIC,
// in the order init loads them (the unpacked kernel package has no
// modules.dep).
var Modules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}

// EchoPort is the guest's TCP echo responder's port.
const EchoPort = 5001

// ReadyLine starts the line the guest's init prints on the serial console
// once its network is configured and the responders run.
const ReadyLine = "ilavm: ready"

// initScript is the guest's /init. Its configuration comes from the kernel
// command line (see Net.cmdline).
var initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in ` + strings.Join(Modules, " ") + `; do
	insmod /lib/modules/$m.ko || echo "ilavm: insmod $m failed"
done
addr= gw=fe80::1 v4= v4gw=
for a in $(cat /proc/cmdline); do
	case "$a" in
	ila.addr=*) addr=${a#ila.addr=} ;;
	ila.gw=*) gw=${a#ila.gw=} ;;
	ila.ipv4=*) v4=${a#ila.ipv4=} ;;
	ila.ipv4gw=*) v4gw=${a#ila.ipv4gw=} ;;
	esac
done
for c in all default eth0; do
	echo 0 > /proc/sys/net/ipv6/conf/$c/accept_dad
	echo 0 > /proc/sys/net/ipv6/conf/$c/autoconf
done
ip link set lo up
ip link set eth0 up
[ -n "$addr" ] && ip -6 addr add "$addr" dev eth0
ip -6 route add default via "$gw" dev eth0
[ -n "$v4" ] && ip addr add "$v4" dev eth0
[ -n "$v4gw" ] && ip route add default via "$v4gw" dev eth0
nc -ll -p ` + fmt.Sprint(EchoPort) + ` -e cat &
i=0
while ! grep -q ':` + fmt.Sprintf("%04X", EchoPort) + ` [0-9A-F]*:0000 0A' /proc/net/tcp6 /proc/net/tcp && [ $i -lt 50 ]; do
	usleep 100000; i=$((i+1))
done
echo "` + ReadyLine + ` $addr $v4"
while true; do sleep 3600; done
`

// Net is the guest's network configuration, passed on its kernel command
// line.
type Net struct {
	// Addr is the guest's IPv6 address and on-link prefix (the task's SIR
	// address, e.g. /64 when the NVE's ND emulator answers for the prefix).
	Addr netip.Prefix
	// Gateway is the default router; zero means fe80::1, the address
	// every NVE port carries.
	Gateway netip.Addr
	// IPv4 and IPv4Gateway are optional.
	IPv4        netip.Prefix
	IPv4Gateway netip.Addr
}

func (n Net) validate() error {
	if !n.Addr.IsValid() || !n.Addr.Addr().Is6() || n.Addr.Addr().Is4In6() {
		return fmt.Errorf("guest address %v: want an IPv6 prefix", n.Addr)
	}
	if n.Gateway.IsValid() && !n.Gateway.Is6() {
		return fmt.Errorf("guest gateway %v: want IPv6", n.Gateway)
	}
	if n.IPv4.IsValid() && !n.IPv4.Addr().Is4() {
		return fmt.Errorf("guest IPv4 address %v: want IPv4", n.IPv4)
	}
	if n.IPv4Gateway.IsValid() && !n.IPv4Gateway.Is4() {
		return fmt.Errorf("guest IPv4 gateway %v: want IPv4", n.IPv4Gateway)
	}
	return nil
}

func (n Net) cmdline() string {
	args := []string{"console=ttyS0", "quiet", "panic=-1", "ila.addr=" + n.Addr.String()}
	if n.Gateway.IsValid() {
		args = append(args, "ila.gw="+n.Gateway.String())
	}
	if n.IPv4.IsValid() {
		args = append(args, "ila.ipv4="+n.IPv4.String())
	}
	if n.IPv4Gateway.IsValid() {
		args = append(args, "ila.ipv4gw="+n.IPv4Gateway.String())
	}
	return strings.Join(args, " ")
}
