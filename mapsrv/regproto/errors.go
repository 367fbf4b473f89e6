package regproto

import "errors"

// Errors. Test with errors.Is.
var (
	// ErrMalformed: the datagram is not a valid message.
	ErrMalformed = errors.New("malformed registration message")
	// ErrTruncated: the datagram is shorter than its header or its Length
	// field. It also matches ErrMalformed.
	ErrTruncated error = &sentinel{"truncated registration message", ErrMalformed}
	// ErrAuth: the HMAC does not verify. ErrUnknownKey also matches it.
	ErrAuth = errors.New("registration message authentication failed")
	// ErrUnknownKey: the key id is not in the key set. It also matches
	// ErrAuth.
	ErrUnknownKey error = &sentinel{"unknown registration key id", ErrAuth}
	// ErrReplay: the replay window refused the message.
	ErrReplay = errors.New("replayed or stale registration message")
	// ErrRejected is matched by the error of a rejected reply (Message.Err).
	ErrRejected = errors.New("registration rejected")
	// ErrTimeout: no valid reply after all tries.
	ErrTimeout = errors.New("no registration reply")
)

// sentinel is an error value that also matches a more general one.
type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string        { return e.msg }
func (e *sentinel) Is(target error) bool { return target == e.parent }

// RejectedError is the error of a rejected reply.
type RejectedError struct {
	Status Status
	Reason Reason
}

func (e *RejectedError) Error() string { return "registration rejected: " + e.Reason.String() }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }
