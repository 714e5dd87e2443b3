// Package errkind is InstructFlow's one list of error kinds. Every package
// wraps one of these sentinels with what went wrong; callers test for the
// kind with errors.Is, Temporal activities turn BadInput into a
// non-retryable failure, and the CLI, at the edge, adds what the user can
// do about each kind.
package errkind

import (
	"errors"
	"fmt"
)

var (
	// BadInput: a user's mistake (a bad setting, missing or invalid data);
	// retrying cannot help.
	BadInput = errors.New("bad input")
	// NotFound: the record or object does not exist.
	NotFound = errors.New("not found")
	// Corrupt: stored bytes do not match their manifest or recorded hash
	// (altered, truncated or partially written); they are never returned.
	Corrupt = errors.New("corrupt")
	// Conflict: a record with this name exists with other content.
	Conflict = errors.New("conflict")
	// Immutable: append-only history cannot be changed.
	Immutable = errors.New("immutable")
	// Unavailable: a service (Postgres, the object store, Temporal) did not
	// answer: it is not running, or not where the configuration says.
	Unavailable = errors.New("unavailable")
	// Unauthenticated: the caller is not signed in (an unknown, ended,
	// expired or revoked session or link).
	Unauthenticated = errors.New("not signed in")
	// Forbidden: the caller is signed in but may not act on this record
	// (another labeler's assignment, an admin page).
	Forbidden = errors.New("forbidden")
)

// BadInputf returns a BadInput error that says what to fix: "bad input: "
// and the formatted message.
func BadInputf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", BadInput, fmt.Sprintf(format, args...))
}
