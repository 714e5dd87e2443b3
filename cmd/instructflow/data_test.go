package main

import (
	"encoding/json"
	"testing"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/tasks"
)

func TestDataLoadDemoIsIdempotent(t *testing.T) {
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", testenv.FreshDatabase(t))
	for i, want := range []int64{int64(tasks.DataPrompts), 0} { // every prompt once, then none
		out, _, err := runCLI(t, "data", "load-demo", "--json")
		var got struct {
			Added int64 `json:"prompts_added"`
		}
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Added != want {
			t.Fatalf("load %d: %v %q, want %d prompts added", i+1, err, out, want)
		}
	}
}
