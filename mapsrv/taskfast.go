package mapsrv

import (
	"strconv"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// decodeTaskFast decodes a task record in the plain form the mapping
// service writes (encoding/json's output: a flat object of known keys,
// strings of printable ASCII without escapes, integers, the arrays and
// the standby object of TaskRecord) about ten times faster than
// encoding/json: a node agent decodes every task of the store at start.
// It reports false for anything else - an unknown or repeated key,
// null, an escape, non-ASCII text, a value its type refuses, trailing
// data - and the caller then decodes with encoding/json, which accepts
// more and reports what is wrong. What it accepts it decodes exactly as
// encoding/json does (FuzzDecodeTaskFast compares the two); the values
// of typed fields go through the same UnmarshalText/UnmarshalJSON
// methods. The record's strings share one allocation.
func decodeTaskFast(b []byte, t *TaskRecord) bool {
	d := fastDec{b: b}
	if !d.object(func(k []byte) bool { return d.taskField(k, t) }) {
		return false
	}
	d.ws()
	if d.i != len(d.b) || d.nstr > len(d.strs) {
		return false
	}
	d.setStrings()
	return true
}

type strRef struct {
	dst        *string
	start, end int
}

type fastDec struct {
	b    []byte
	i    int
	seen uint32
	// strs are the string fields decoded, set by setStrings.
	strs [12]strRef
	nstr int
}

func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips white space and then c.
func (d *fastDec) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek skips white space and reports whether c is next.
func (d *fastDec) peek(c byte) bool {
	d.ws()
	return d.i < len(d.b) && d.b[d.i] == c
}

// str reads a string of printable ASCII without escapes and returns the
// offsets of its content.
func (d *fastDec) str() (start, end int, ok bool) {
	if !d.consume('"') {
		return 0, 0, false
	}
	start = d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return start, d.i - 1, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return 0, 0, false
		}
		d.i++
	}
	return 0, 0, false
}

// object reads an object, calling field for each key with the decoder
// at its value.
func (d *fastDec) object(field func(k []byte) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		s, e, ok := d.str()
		if !ok || !d.consume(':') || !field(d.b[s:e]) {
			return false
		}
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// array reads an array, calling elem for each element.
func (d *fastDec) array(elem func() bool) bool {
	if !d.consume('[') {
		return false
	}
	if d.consume(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.consume(']') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// once marks field bit as seen; a repeated key is left to encoding/json.
func (d *fastDec) once(bit uint) bool {
	if d.seen&(1<<bit) != 0 {
		return false
	}
	d.seen |= 1 << bit
	return true
}

// string reads a string into *dst (set by setStrings).
func (d *fastDec) string(dst *string) bool {
	s, e, ok := d.str()
	if !ok {
		return false
	}
	if d.nstr < len(d.strs) {
		d.strs[d.nstr] = strRef{dst, s, e}
	}
	d.nstr++ // beyond the array: the record is left to encoding/json
	return true
}

// setStrings sets every string read from one allocation.
func (d *fastDec) setStrings() {
	n := 0
	for _, r := range d.strs[:d.nstr] {
		n += r.end - r.start
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, r := range d.strs[:d.nstr] {
		sb.Write(d.b[r.start:r.end])
	}
	all := sb.String()
	off := 0
	for _, r := range d.strs[:d.nstr] {
		l := r.end - r.start
		*r.dst = all[off : off+l]
		off += l
	}
}

// text reads a string into a value with its UnmarshalText, as
// encoding/json does.
func (d *fastDec) text(u interface{ UnmarshalText([]byte) error }) bool {
	s, e, ok := d.str()
	return ok && u.UnmarshalText(d.b[s:e]) == nil
}

// time reads a time with time.Time's UnmarshalJSON, as encoding/json does.
func (d *fastDec) time(t *time.Time) bool {
	s, e, ok := d.str()
	return ok && t.UnmarshalJSON(d.b[s-1:e+1]) == nil
}

// integer reads a JSON integer (no fraction or exponent).
func (d *fastDec) integer() ([]byte, bool) {
	d.ws()
	s := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	ds := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	n := d.i - ds
	if n == 0 || (n > 1 && d.b[ds] == '0') {
		return nil, false // no digits, or a leading zero (not JSON)
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			return nil, false
		}
	}
	return d.b[s:d.i], true
}

func (d *fastDec) taskField(k []byte, t *TaskRecord) bool {
	switch string(k) {
	case "domain":
		return d.once(0) && d.string(&t.Domain)
	case "name":
		return d.once(1) && d.string(&t.Name)
	case "tenant":
		return d.once(2) && d.string(&t.Tenant)
	case "identifier":
		return d.once(3) && d.text(&t.Identifier)
	case "sir":
		return d.once(4) && d.text(&t.SIR)
	case "locator":
		return d.once(5) && d.text(&t.Locator)
	case "nve":
		return d.once(6) && d.string(&t.NVE)
	case "vni":
		v, ok := d.integer()
		if !ok || !d.once(7) {
			return false
		}
		n, err := strconv.ParseUint(string(v), 10, 32)
		t.VNI = uint32(n)
		return err == nil
	case "mac":
		return d.once(8) && d.text(&t.MAC)
	case "ipv4":
		return d.once(9) && d.text(&t.IPv4)
	case "lifetime":
		return d.once(10) && d.text(&t.Lifetime)
	case "expiry":
		return d.once(11) && d.time(&t.Expiry)
	case "version":
		v, ok := d.integer()
		if !ok || !d.once(12) {
			return false
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		t.Version = n
		return err == nil
	case "state":
		if !d.once(13) {
			return false
		}
		s, e, ok := d.str()
		if !ok {
			return false
		}
		// The states are constants: no string to allocate.
		switch string(d.b[s:e]) {
		case string(ila.StateActive):
			t.State = ila.StateActive
		case string(ila.StateSuspended):
			t.State = ila.StateSuspended
		case string(ila.StateDuplicate):
			t.State = ila.StateDuplicate
		default:
			t.State = ila.State(d.b[s:e])
		}
		return true
	case "previous":
		if !d.once(14) {
			return false
		}
		// Grown by append from empty, as encoding/json grows it: the
		// same capacity (code that appends to a copy of a record sees the
		// same aliasing either way).
		t.Previous = []ila.Previous{}
		return d.array(func() bool {
			t.Previous = append(t.Previous, ila.Previous{})
			p := &t.Previous[len(t.Previous)-1]
			var seen uint8
			return d.object(func(k []byte) bool {
				var bit uint8
				switch string(k) {
				case "locator":
					bit = 1
				case "nve":
					bit = 2
				case "until":
					bit = 4
				default:
					return false
				}
				if seen&bit != 0 {
					return false
				}
				seen |= bit
				switch bit {
				case 1:
					return d.text(&p.Locator)
				case 2:
					// Its own string: append may move the element.
					s, e, ok := d.str()
					p.NVE = string(d.b[s:e])
					return ok
				default:
					return d.time(&p.Until)
				}
			})
		})
	case "updated":
		return d.once(15) && d.time(&t.Updated)
	case "moved_by":
		return d.once(16) && d.string(&t.MovedBy)
	case "moves":
		if !d.once(17) {
			return false
		}
		t.Moves = []time.Time{} // capacity as encoding/json's (above)
		return d.array(func() bool {
			t.Moves = append(t.Moves, time.Time{})
			return d.time(&t.Moves[len(t.Moves)-1])
		})
	case "pending_nve":
		return d.once(18) && d.string(&t.PendingNVE)
	case "pending_mode":
		return d.once(19) && d.text(&t.PendingMode)
	case "pending_until":
		return d.once(20) && d.time(&t.PendingUntil)
	case "standby":
		if !d.once(21) || d.peek('n') {
			return false // null: left to encoding/json
		}
		sb := &Standby{}
		t.Standby = sb
		var seen uint8
		return d.object(func(k []byte) bool {
			var bit uint8
			switch string(k) {
			case "nve":
				bit = 1
			case "locator":
				bit = 2
			case "since":
				bit = 4
			default:
				return false
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			switch bit {
			case 1:
				return d.string(&sb.NVE)
			case 2:
				return d.text(&sb.Locator)
			default:
				return d.time(&sb.Since)
			}
		})
	case "expect":
		if !d.once(22) || d.peek('n') {
			return false // null: left to encoding/json
		}
		x := &Expectation{}
		t.Expect = x
		var seen uint8
		return d.object(func(k []byte) bool {
			var bit uint8
			switch string(k) {
			case "nve":
				bit = 1
			case "since":
				bit = 2
			case "until":
				bit = 4
			default:
				return false
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			switch bit {
			case 1:
				return d.string(&x.NVE)
			case 2:
				return d.time(&x.Since)
			default:
				return d.time(&x.Until)
			}
		})
	}
	return false // unknown key (encoding/json ignores it, or matches it without case)
}
