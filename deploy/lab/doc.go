// Package lab builds the whole ILA data center in network namespaces on one
// machine: a fabric namespace (the L3 underlay, plus the ILA router), N NVE
// namespaces each running ilad, task namespaces joined to their NVE by a
// veth, and a control namespace running mapsrv (embedded etcd) and dnsbridge.
//
// Addressing plan (all fixed, so that a reader can guess any address):
//
//	SIR prefix (domain "default", neutral-map)  fd00:5151::/64
//	task n identifier                            LUID n  (0x2000_0000_0000_000n)
//	task n SIR address                           fd00:5151::2000:0:0:n
//	IPv4 tenant task n (tenant "v4", VNI 100)    10.100.0.n/24, identifier VN-IPv4(100, 10.100.0.n)
//	NVE n locator                                fd00:1c:0:n::/64
//	fabric <-> NVE n link                        fd00:ff:0:n::/64 (fabric ::1, NVE ::2)
//	NVE n underlay (VTEP) address                fd00:ff:0:n::2
//	fabric <-> control link                      fd00:ff:c0::/64 (fabric ::1, control ::2)
//	mapsrv HTTP API                              [fd00:ff:c0::2]:8080 and unix socket in the state dir
//	mapsrv registration (UDP)                    [fd00:ff:c0::2]:4790
//	dnsbridge                                    [fd00:ff:c0::2]:53, zone "ila.lab."
//	etcd (embedded in mapsrv)                    unix://<state-dir>/etcd/etcd.sock
//	ILA router metrics (ilad --role router)      [::1]:9464 inside the fabric namespace
//	host <-> control link (--host-link)          fd00:ff:c1::/64 (host ::1, control ::2),
//	                                             host route fd00:ff:c0::/64 via fd00:ff:c1::2
//
// Namespace names are <prefix>-fabric, <prefix>-ctl, <prefix>-nve<n> and
// <prefix>-<task>; task names are t1, t2, ... numbered across NVEs. Inside
// an NVE the task-facing end of task tN's veth is called tN, the uplink
// "up0"; inside a task its interface is "eth0"; inside the fabric the link to
// NVE n is "nve<n>" and the link to the control namespace "ctl".
//
// # Why it lives in deploy/
//
// The lab is not a helper of the product: it is one more way to deploy
// it, the whole system in network namespaces instead of on machines. It
// starts the product's binaries as a user would (mapsrv, ilad on every
// NVE, ilad --role router as the fabric's ILA router, dnsbridge, ilactl;
// see deploy/README.md) and drives them through their public interfaces
// (mapsrv's API, ilad's local API, the mapping in etcd). As an
// orchestrator it sits above every product package and may import them
// (mapsrv, locator), which a package under internal/, the ground floor
// every package may use, must not. cmd/ilalab is a thin main over it, and
// the end-to-end tests in test/ build their data centers with it.
//
// The data of a lab builds on every OS (the plan, Config, Topology, the
// demo's Report and its timeline: plan.go, config.go, report.go, svg.go),
// so that a report.json can be read and drawn anywhere; everything that
// touches namespaces, links, sockets or processes is in *_linux.go.
package lab
