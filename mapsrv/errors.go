package mapsrv

import "errors"

// Sentinel errors. Test with errors.Is.
var (
	// ErrNotFound: no such task, NVE, domain or index entry.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record changed between read and write (a concurrent
	// writer won), or a name, MAC or locator is taken by another record.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request is malformed or names something unusable.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the NVE may not claim what it asked for (not its
	// locator, or a duplicate identifier).
	ErrForbidden = errors.New("forbidden")
	// ErrDuplicate: flap damping refuses the move (more than FlapMoves
	// within FlapWindow; nothing changed, the task stays where it is), or
	// the task carries a duplicate mark (written by an older mapsrv) that
	// an operator clears.
	ErrDuplicate = errors.New("refused by flap damping")
	// ErrMalformed: a stored value cannot be decoded (written by hand?).
	ErrMalformed = errors.New("malformed stored value")
)

// Marks joined to ErrNotFound to say what was not found.
var (
	errNoDomain = errors.New("no such domain")
	errNoNVE    = errors.New("no such nve")
)
