// Package mapsrv is the ILA mapping authority (the NVA of
// draft-ietf-nvo3-vmm and the management node of
// draft-sarikaya-nvo3-vmm-dmm-pmip): it holds identifier -> locator state
// and every other fact about a task in a Store (etcd in production, see
// mapsrv/etcdstore) and is its only writer.
//
// The Service implements registration (new tasks and re-registrations that
// extend a lifetime), hot/warm/cold moves with make-before-break and
// in-flight previous locators, deregistration, a lifetime sweeper, flap
// damping and notification of previous NVEs. Every write is a conditional
// transaction on the revisions read, so several Service replicas over one
// store are safe: of two concurrent moves of one task exactly one wins.
//
// The key layout and the JSON values are defined in keys.go and documented
// in docs/etcd-layout.md.
package mapsrv
