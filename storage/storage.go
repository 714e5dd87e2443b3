// Package storage holds what the Postgres and object-store backends share:
// the errors callers test for and the rule for ids that become keys.
package storage

import (
	"errors"
	"fmt"
	"regexp"
)

var (
	// ErrNotFound: the record or object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes do not match their manifest (altered,
	// truncated or partially written); they are never returned.
	ErrCorrupt = errors.New("corrupt")
	// ErrImmutable: the database refused to change append-only history.
	ErrImmutable = errors.New("immutable")
	// ErrConflict: a record with this name exists with other content.
	ErrConflict = errors.New("conflict")
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateID checks a run or stage id before it becomes part of an object
// key, a workflow id or a row: 1-63 lower-case letters, digits, '-' or '_',
// starting with a letter or digit. No '/', '.' or '..' can get through.
func ValidateID(kind, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid %s id %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", kind, id)
	}
	return nil
}
