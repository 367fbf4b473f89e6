// Package netns manages named Linux network namespaces for the lab, the e2e
// tests and the privileged tests of every component.
//
// The shape follows cilium's NetNS: a namespace is created on a locked OS
// thread in a fresh goroutine, so the caller's thread never changes
// namespace; work that must happen inside runs through Do, again on a fresh
// locked thread, which is thrown away (never returned to the Go scheduler) if
// switching back fails. Netlink handles opened with Handle and sockets opened
// inside Do stay bound to the namespace and can be used from any goroutine.
//
// Named namespaces live under /var/run/netns like those of iproute2, so
// `ip netns exec NAME` and `ip -n NAME` see them (but note that `ip netns
// exec` remounts /sys, hiding /sys/fs/bpf; daemons needing bpffs should be
// given the namespace path instead and switch only their network namespace).
package netns
