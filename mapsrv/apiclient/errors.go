package apiclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// Errors of the API that mapsrv.Service itself has no sentinel for. Test
// with errors.Is.
var (
	// ErrUnauthorized: the API wants a bearer token and got none or a
	// wrong one (HTTP 401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: mapsrv or its store cannot serve the request now
	// (HTTP 503, or 501 for a watch mapsrv has no source for); retrying
	// later may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// Error is an error answer of the API. errors.Is matches it against the
// sentinel of its code: mapsrv.ErrInvalid (400, "invalid"),
// ErrUnauthorized (401), mapsrv.ErrForbidden (403), mapsrv.ErrNotFound
// (404), mapsrv.ErrConflict (409, "conflict"), mapsrv.ErrDuplicate (409,
// "duplicate": flap damping), ErrUnavailable (503).
type Error struct {
	Method, Path string
	Status       int    // HTTP status
	Code         string // mapsrv.ErrorBody.Code; empty when the body was not one
	Message      string // mapsrv.ErrorBody.Error, or the start of another body
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	}
	if e.Message != "" {
		return fmt.Sprintf("mapsrv api: %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
	}
	return fmt.Sprintf("mapsrv api: %s %s: HTTP %d", e.Method, e.Path, e.Status)
}

// Unwrap returns the sentinel of the error's code, or for an answer
// without one (a proxy's, say) of its status where that is unambiguous;
// nil otherwise.
func (e *Error) Unwrap() error {
	switch e.Code {
	case "invalid":
		return mapsrv.ErrInvalid
	case "unauthorized":
		return ErrUnauthorized
	case "forbidden":
		return mapsrv.ErrForbidden
	case "not_found":
		return mapsrv.ErrNotFound
	case "conflict":
		return mapsrv.ErrConflict
	case "duplicate":
		return mapsrv.ErrDuplicate
	case "unavailable":
		return ErrUnavailable
	case "":
		switch e.Status {
		case http.StatusUnauthorized:
			return ErrUnauthorized
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return ErrUnavailable
		}
	}
	return nil
}

// readError reads an error answer.
func readError(resp *http.Response, method, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Method: method, Path: path, Status: resp.StatusCode}
	var eb mapsrv.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		e.Code, e.Message = eb.Code, eb.Error
		return e
	}
	msg := strings.Join(strings.Fields(string(b)), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	e.Message = msg
	return e
}
