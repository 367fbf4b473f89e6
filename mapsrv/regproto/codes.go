package regproto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/ilamesh/ilamesh/ila"
)

// Protocol constants. docs/registration.md is the normative description.
const (
	// Version is the protocol version carried in the first header byte.
	Version = 1
	// HeaderLen is the length of the fixed header.
	HeaderLen = 28
	// AuthLen is the length of the HMAC-SHA256 value in the Authentication
	// option.
	AuthLen = sha256.Size
	// AuthOptionLen is the length of the whole Authentication option
	// (type, length, value).
	AuthOptionLen = 2 + AuthLen
	// SigLen is the length of the Ed25519 signature in the Signature
	// option.
	SigLen = ed25519.SignatureSize
	// SigOptionLen is the length of the whole Signature option.
	SigOptionLen = 2 + SigLen
	// MinMessageLen is the smallest valid message: a header followed by the
	// Authentication option (a real message also needs a Lifetime option).
	MinMessageLen = HeaderLen + AuthOptionLen
	// MaxMessageLen is the largest message either side sends or accepts.
	MaxMessageLen = 1400
	// MaxStringLen is the longest string option value (NVE name, VM-ID,
	// tenant, domain), in bytes of UTF-8.
	MaxStringLen = 255
	// MaxAddrs is the most VM address options one message may carry.
	MaxAddrs = 32
)

// Header flag bits (byte 2 of the header).
const (
	// FlagNotify marks a request sent by the mapping service to a previous
	// NVE of a task: the task moved to the locator in the Locator option.
	FlagNotify = 0x80
	// FlagHeartbeat marks a request that only says the NVE is alive
	// (docs/FAILOVER.md); the reply carries the NVE's epoch.
	FlagHeartbeat = 0x40
)

// OptionType is the type byte of a TLV option.
type OptionType uint8

// Option type codes. Types with the high bit (OptSkippable) set may be
// skipped by a receiver that does not know them; unknown types without it
// make the message malformed.
const (
	OptMAC      OptionType = 1   // 6 bytes: VM MAC address
	OptVMID     OptionType = 2   // 1-255 bytes UTF-8: VM identifier / task name
	OptIPv6     OptionType = 3   // 16 bytes: VM IPv6 address (SIR), repeatable
	OptIPv4     OptionType = 4   // 4 bytes: VM IPv4 address, repeatable
	OptLifetime OptionType = 5   // 2 bytes: lifetime in 4 s units
	OptStatus   OptionType = 6   // 2 bytes: status, reason
	OptTenant   OptionType = 7   // 1-255 bytes UTF-8
	OptDomain   OptionType = 8   // 1-255 bytes UTF-8: ILA domain name
	OptVNI      OptionType = 9   // 4 bytes
	OptLocator  OptionType = 10  // 8 bytes: ILA locator
	OptNVE      OptionType = 11  // 1-255 bytes UTF-8: sender NVE name
	OptMoveMode OptionType = 12  // 1 byte: move mode
	OptRole     OptionType = 13  // 1 byte: 1 = standby for the task (failover.go)
	OptEpoch    OptionType = 141 // 4 bytes, may skip: the NVE's epoch (failover.go)
	// OptApplied: 8 bytes, may skip: in a heartbeat, the store (etcd)
	// revision the NVE's datapath has applied (failover.go).
	OptApplied OptionType = 142
	// OptAPI: 1-255 bytes UTF-8, may skip: in a heartbeat, the URL of the
	// NVE's local API for operators (ilad -api-advertise).
	OptAPI  OptionType = 143
	OptAuth OptionType = 127 // 32 bytes: HMAC-SHA256, always last
	// OptSig replaces OptAuth for a key that is an Ed25519 key pair (the
	// mapping service's): 64 bytes, an Ed25519 signature, always last.
	// Receivers verify it with the public key only, so holding it does not
	// let them sign.
	OptSig OptionType = 126

	// OptSkippable is the "may skip" bit of an option type.
	OptSkippable OptionType = 0x80
)

var optionNames = map[OptionType]string{
	OptMAC: "mac", OptVMID: "vm-id", OptIPv6: "ipv6-address", OptIPv4: "ipv4-address",
	OptLifetime: "lifetime", OptStatus: "status", OptTenant: "tenant", OptDomain: "domain",
	OptVNI: "vni", OptLocator: "locator", OptNVE: "nve", OptMoveMode: "move-mode", OptAuth: "auth", OptSig: "signature",
	OptRole: "role", OptEpoch: "epoch", OptApplied: "applied revision", OptAPI: "api address",
}

func (t OptionType) String() string {
	if s, ok := optionNames[t]; ok {
		return s
	}
	return fmt.Sprintf("option-%d", uint8(t))
}

// MsgType is the message type (header byte 1).
type MsgType uint8

// Message types.
const (
	TypeRequest MsgType = 1 // Registration Request (NVE -> mapsrv, or mapsrv -> NVE with FlagNotify)
	TypeReply   MsgType = 2 // Registration Reply
)

func (t MsgType) String() string {
	switch t {
	case TypeRequest:
		return "request"
	case TypeReply:
		return "reply"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Status is the status code of a reply. As in the draft, values below 128
// accept the registration and values from 128 reject it.
type Status uint8

// Status codes.
const (
	StatusAccepted Status = 0
	StatusRejected Status = 128
)

// Accepted reports whether s accepts the registration (s < 128).
func (s Status) Accepted() bool { return s < 128 }

func (s Status) String() string {
	switch s {
	case StatusAccepted:
		return "accepted"
	case StatusRejected:
		return "rejected"
	}
	if s.Accepted() {
		return fmt.Sprintf("accepted-%d", uint8(s))
	}
	return fmt.Sprintf("rejected-%d", uint8(s))
}

// Reason says why a reply has its status. Accepted replies carry
// ReasonNone.
type Reason uint8

// Reason codes.
const (
	ReasonNone          Reason = 0
	ReasonMalformed     Reason = 1  // the request could not be parsed
	ReasonAuth          Reason = 2  // unknown key id or bad HMAC
	ReasonReplay        Reason = 3  // sequence number seen or too old, or timestamp outside the window
	ReasonNotAuthorized Reason = 4  // the NVE may not claim this task or locator
	ReasonUnknownTask   Reason = 5  // no such task (move, deregistration)
	ReasonDuplicate     Reason = 6  // flap damping refused the move (or the identifier is marked duplicate)
	ReasonConflict      Reason = 7  // lost a concurrent move of the same task
	ReasonSuspended     Reason = 8  // the task is suspended (cold move under way)
	ReasonInternal      Reason = 9  // the mapping service failed (store unavailable, ...)
	ReasonInvalid       Reason = 10 // well-formed but semantically invalid (address not in the domain, ...)
	ReasonUnknownDomain Reason = 11 // no such ILA domain
	ReasonUnknownNVE    Reason = 12 // the sending NVE is not registered
	ReasonBusy          Reason = 13 // overloaded; retry later
	ReasonFenced        Reason = 14 // the NVE was declared dead since its epoch: resync first
	ReasonUnjustified   Reason = 15 // a claim of a task another NVE hosts, and nothing justifies the move
)

var reasonNames = map[Reason]string{
	ReasonNone: "none", ReasonMalformed: "malformed", ReasonAuth: "authentication failed",
	ReasonReplay: "replay", ReasonNotAuthorized: "not authorized", ReasonUnknownTask: "unknown task",
	ReasonDuplicate: "duplicate (flap damped)", ReasonConflict: "conflict (concurrent move)",
	ReasonSuspended: "suspended", ReasonInternal: "internal error", ReasonInvalid: "invalid request",
	ReasonUnknownDomain: "unknown domain", ReasonUnknownNVE: "unknown NVE", ReasonBusy: "busy",
	ReasonFenced: "fenced (declared dead; stale epoch)", ReasonUnjustified: "claim not justified",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// MoveMode is how a task moves (draft section 7): the ila type, whose
// values are this protocol's wire codes.
type MoveMode = ila.MoveMode

// Move modes.
const (
	MoveNone = ila.MoveNone
	MoveHot  = ila.MoveHot  // make before break; the previous NVE forwards in-flight packets
	MoveWarm = ila.MoveWarm // like cold, state mirrored beforehand
	MoveCold = ila.MoveCold // suspended until the task registers at the new NVE
)
