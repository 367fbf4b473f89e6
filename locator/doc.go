// Package locator is the node agent of an ILA NVE (host): it keeps the
// datapath's mapping table equal to the mapping service's store, attaches
// local tasks (ports, local delivery entries, registration), turns the
// entries of tasks that moved away into in-flight redirects, and answers
// the datapath's cache misses.
//
// It implements the ILA node (ILA-N) role of draft-herbert-intarea-ila-01
// section 3 (a host that translates for its own tasks, from a full table
// "push" or a working-set cache filled on misses "pull"), the make-before-
// break hot move and in-flight forwarding of draft-herbert-nvo3-ila-04
// section 5, and the registration of tasks with the mapping node (ILA-M)
// described in draft-herbert-ila-ilamp-00.
//
// In pull mode the working set ages: an entry pulled on a miss stays
// [Config.PullTTL] (5 minutes by default) and goes, and [Config.PullMax]
// caps the set (oldest first). The datapath does not report which entries
// packets use, so a flow that outlives its entry misses once more: its
// packets take the ILA router (or the miss policy) until the entry is
// pulled again, rate limited like every miss.
//
// With [Config.Router] the same agent serves an ILA router (ILA-R, section
// 3 of draft-herbert-intarea-ila-01): it has no locator and no tasks, and
// keeps the datapath's table equal to the whole store, with the same
// adoption of pinned entries, relist after a broken watch and convergence
// by revision as an NVE in push mode.
//
// The agent talks to the rest of the system only through the small
// interfaces in this package ([Datapath], [MappingSource], [Registrar],
// [TaskLookup], [MissReader], [Ports], [PortHook]); cmd/ilad plugs in the
// eBPF datapath, the etcd watch client and the registration protocol.
package locator
