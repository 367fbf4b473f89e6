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
	// ErrDuplicate: flap damping marked the task duplicate; moves are
	// refused until an operator clears it.
	ErrDuplicate = errors.New("task marked duplicate by flap damping")
	// ErrMalformed: a stored value cannot be decoded (written by hand?).
	ErrMalformed = errors.New("malformed stored value")
)

// Marks joined to ErrNotFound to say what was not found.
var (
	errNoDomain = errors.New("no such domain")
	errNoNVE    = errors.New("no such nve")
)
