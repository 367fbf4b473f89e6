// Command ila-cni is a CNI plugin (spec 1.1: ADD, DEL, CHECK, GC,
// STATUS, VERSION) that puts a container on an NVE as an ILA task: a veth
// pair from the container's network namespace to the NVE, the task
// attached to the NVE's ilad (local API), which registers it with the
// mapping service, and the container's address its SIR address (/128,
// default route via fe80::1, the anycast gateway of every NVE).
//
// The SIR address is allocated by mapsrv for the task's name (so a pod
// re-created on another node keeps its address, and its mapping moves
// there once the old pod is gone, or while an orchestrator's expectation
// names the new node: docs/registration.md 7.4), taken from an IPAM plugin (host-local, static) or from
// prevResult when chained. The network configuration is documented on
// NetConf and in the README ("Containers (CNI)").
//
// Errors are CNI error results: the spec's codes (3 unknown container,
// 4 bad CNI_ARGS, 6 undecodable config, 7 invalid config, 11 try again
// later: ilad or mapsrv unreachable, 50 STATUS: not available) and the
// plugin's own: 100 the mapping service refused the task (flap damping,
// forbidden locator, a claim of a task another live node holds that no
// expectation justifies), 101 the name or address is held by another task on
// this NVE. A failed ADD undoes what it did (veth, ilad attachment, IPAM
// lease, a new allocation).
package main
