// Package regproto is the registration wire protocol between an NVE (the
// node agent, ilad) and the mapping service (mapsrv): authenticated UDP
// Registration Requests and Replies with TLV options, after
// draft-sarikaya-nvo3-vmm-dmm-pmip-04 section 5 ("VM Mobility Protocol
// Operation").
//
// From the draft it keeps: the Registration Request/Reply pair over UDP;
// the VM MAC address, VM identifier and (repeatable) VM address options;
// a 16-bit lifetime in units of 4 seconds that the NVE suggests and the
// mapping service grants equal or lower, 0 deregistering; a status field
// in the reply (values below 128 accept, others reject) with a reason
// code; and the Registration Request that the management node sends to
// previous NVEs after a move, which they must verify came from it (here:
// the Notify flag, authenticated like every other message).
//
// It adds what the draft leaves open: a fixed header with version,
// sequence number, timestamp and key id; options for tenant, ILA domain,
// VNI, locator, NVE name and move mode; an HMAC-SHA256 Authentication
// option that ends every message; and a replay window.
//
// The byte layout, the code points and the processing rules are specified
// in docs/registration.md; this package is the reference implementation.
// It belongs to the mapping service, which defines the protocol, and
// imports only the standard library and package ila, so that another NVE
// implementation (a hypervisor's agent, a smart NIC's) can use it alone.
// The examples show an NVE's side: build and sign a request
// ([Message.Marshal], with the bytes of the document's section 10.1),
// verify a reply ([Parse]), register with a [Client] and listen for move
// notifications with a [Server].
//
// [Parse] and [ParseUnauthenticated] never panic; they return errors that
// match (errors.Is) [ErrMalformed], [ErrTruncated], [ErrAuth] or
// [ErrUnknownKey]. [Server] runs the responder side (mapsrv, and an NVE
// receiving move notifications), [Client] the requester side.
package regproto
