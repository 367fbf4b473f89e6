package lab

import (
	"strconv"
	"strings"
)

// The lab's DNS bridge limits each client to DNSRateLimit UDP queries per
// second (bursts of DNSRateBurst): without a limit, its answers (up to
// 3.6 times the query's size for ANY at the apex) make it an amplifier for
// anyone who can spoof a source address on the lab's networks.
const (
	DNSRateLimit = 200
	DNSRateBurst = 400
)

// dnsbridgeArgs are the flags the lab starts dnsbridge with.
func dnsbridgeArgs(endpoints []string, listen string) []string {
	return []string{
		"--etcd-endpoints", strings.Join(endpoints, ","), "--listen", listen, "--zone", Zone,
		"--ttl", "1s",
		"--rate-limit", strconv.Itoa(DNSRateLimit), "--rate-burst", strconv.Itoa(DNSRateBurst),
	}
}
