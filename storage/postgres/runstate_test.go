package postgres

import (
	"context"
	"regexp"
	"slices"
	"testing"

	"github.com/instructflow/instructflow/runstate"
)

// The database's CHECK constraints list exactly the names and statuses of
// package runstate, which the workflow, the activities and the CLI use.
func TestCheckConstraintsMatchRunstate(t *testing.T) {
	db := openFresh(t)
	strs := func(xs any) []string {
		var out []string
		switch v := xs.(type) {
		case []runstate.Stage:
			for _, x := range v {
				out = append(out, string(x))
			}
		case []runstate.Status:
			for _, x := range v {
				out = append(out, string(x))
			}
		}
		slices.Sort(out)
		return out
	}
	quoted := regexp.MustCompile(`'([^']*)'`)
	for name, want := range map[string][]string{
		"stages_name_check":   strs(runstate.Stages),
		"stages_status_check": strs(runstate.StageStatuses),
		"runs_status_check":   strs(runstate.RunStatuses),
	} {
		var def string
		if err := db.pool.QueryRow(context.Background(),
			"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", name).Scan(&def); err != nil {
			t.Fatalf("constraint %s: %v", name, err)
		}
		var got []string
		for _, m := range quoted.FindAllStringSubmatch(def, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s allows %v; package runstate has %v", name, got, want)
		}
	}
}
