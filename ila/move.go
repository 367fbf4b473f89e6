package ila

import "fmt"

// MoveMode is how a task moves from one NVE to another (draft-herbert-nvo3-ila-04
// section 7). The values are the wire codes of the registration protocol's
// move-mode option; the text form ("hot", "warm", "cold") is the one of
// mapsrv's API and its records in etcd.
type MoveMode uint8

// Move modes.
const (
	// MoveNone: no move, or the default of whoever reads it (mapsrv: hot).
	MoveNone MoveMode = 0
	// MoveHot: make before break; the previous NVE forwards in-flight packets.
	MoveHot MoveMode = 1
	// MoveWarm: like cold, state mirrored beforehand.
	MoveWarm MoveMode = 2
	// MoveCold: suspended until the task registers at the new NVE.
	MoveCold MoveMode = 3
)

var moveNames = [...]string{"none", "hot", "warm", "cold"}

func (m MoveMode) String() string {
	if int(m) < len(moveNames) {
		return moveNames[m]
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Valid reports whether m is one of the defined modes.
func (m MoveMode) Valid() bool { return int(m) < len(moveNames) }

// ParseMoveMode parses "hot", "warm", "cold" or "none" ("" is none).
func ParseMoveMode(s string) (MoveMode, error) {
	if s == "" {
		return MoveNone, nil
	}
	for i, n := range moveNames {
		if n == s {
			return MoveMode(i), nil
		}
	}
	return 0, &ParseError{What: "move mode", Input: s, Msg: "want hot, warm or cold"}
}

// MarshalText implements encoding.TextMarshaler.
func (m MoveMode) MarshalText() ([]byte, error) {
	if !m.Valid() {
		return nil, fmt.Errorf("marshal move mode %d: not a move mode", uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MoveMode) UnmarshalText(b []byte) error {
	v, err := ParseMoveMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
