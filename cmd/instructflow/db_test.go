package main

import (
	"strings"
	"testing"

	"github.com/instructflow/instructflow/internal/testenv"
)

// TestDBMigrate: commands refuse a database without the schema and name
// `db migrate`, which sets it up as the owner; a second migrate changes
// nothing.
func TestDBMigrate(t *testing.T) {
	owner := testenv.EmptyDatabase(t)
	t.Setenv("INSTRUCTFLOW_POSTGRES_OWNER_URL", owner)
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", testenv.RuntimeURL(t, owner))

	if _, _, err := runCLI(t, "data", "load-demo"); err == nil || !strings.Contains(err.Error(), "run `instructflow db migrate`") {
		t.Fatalf("a command on an unmigrated database: %v, want it to say to run db migrate", err)
	}
	out, _, err := runCLI(t, "db", "migrate")
	if err != nil || !strings.Contains(out, "(was 0)") {
		t.Fatalf("db migrate: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "db", "migrate"); err != nil || !strings.Contains(out, "nothing to migrate") {
		t.Fatalf("db migrate again: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "data", "load-demo"); err != nil {
		t.Fatalf("a command after db migrate: %v", err)
	}
}
