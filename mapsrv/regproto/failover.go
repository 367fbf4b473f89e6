package regproto

import (
	"encoding/binary"
	"fmt"
)

// Role is the role a registration claims for its NVE (option 13).
type Role uint8

// Roles.
const (
	// RolePrimary (the default, also absence): the NVE hosts the task.
	RolePrimary Role = 0
	// RoleStandby: the NVE holds a prepared port for the task and takes
	// it over if the NVE hosting it is declared dead (hot standby,
	// draft-ietf-nvo3-vmm-15 section 8).
	RoleStandby Role = 1
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleStandby:
		return "standby"
	}
	return fmt.Sprintf("role-%d", uint8(r))
}

// Valid reports whether r is a defined role.
func (r Role) Valid() bool { return r <= RoleStandby }

// epochBit is the duplicate-detection bit of OptEpoch (whose type, with
// the skip bit, is above the 32 bits of the seen mask).
const epochBit OptionType = 31

// appliedBit and apiBit are the duplicate-detection bits of OptApplied
// and OptAPI.
const (
	appliedBit OptionType = 30
	apiBit     OptionType = 29
)

// appendFailover appends the Role, Epoch and Applied options (absent when zero).
func (m *Message) appendFailover(dst []byte) []byte {
	if m.Role != RolePrimary {
		dst = append(dst, byte(OptRole), 1, byte(m.Role))
	}
	if m.Epoch != 0 {
		dst = append(dst, byte(OptEpoch), 4)
		dst = binary.BigEndian.AppendUint32(dst, m.Epoch)
	}
	if m.Applied > 0 {
		dst = append(dst, byte(OptApplied), 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Applied))
	}
	return dst
}

// parseFailover decodes a Role, Epoch or Applied option value (length checked).
func (m *Message) parseFailover(t OptionType, v []byte, at int) error {
	switch t {
	case OptRole:
		m.Role = Role(v[0])
		if !m.Role.Valid() {
			return fmt.Errorf("role option at offset %d: unknown role %d: %w", at, v[0], ErrMalformed)
		}
	case OptEpoch:
		m.Epoch = binary.BigEndian.Uint32(v)
	case OptApplied:
		r := binary.BigEndian.Uint64(v)
		if r > 1<<63-1 {
			return fmt.Errorf("applied revision option at offset %d: %d out of range: %w", at, r, ErrMalformed)
		}
		m.Applied = int64(r)
	}
	return nil
}
