// Package storage holds what the Postgres and object-store backends share:
// the rule for ids that become keys. Their errors are package errkind's.
package storage

import (
	"fmt"
	"regexp"
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
