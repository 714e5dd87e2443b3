package main

import (
	"encoding/json"
	"strings"
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
	// The demo task is one more dataset: a row per prompt, a demonstration
	// where it has one (every train prompt, the first 200 held-out ones).
	out, _, err := runCLI(t, "data", "list", "--json")
	var list []struct {
		Name                                 string
		Rows, Demonstrations, Train, Heldout int
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "strops" ||
		list[0].Rows != tasks.DataPrompts || list[0].Train != tasks.DataPrompts*4/5 || list[0].Demonstrations != tasks.DataPrompts*4/5+200 {
		t.Fatalf("data list after load-demo: %v\n%s", err, out)
	}
}

// --prompts loads that many; a larger count later adds only the new ones
// (the first N prompts are the same for every N); too few is refused.
func TestDataLoadDemoPrompts(t *testing.T) {
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", testenv.FreshDatabase(t))
	for _, tc := range []struct {
		args []string
		want int64
	}{
		{[]string{"--prompts", "200"}, 200},
		{nil, int64(tasks.DataPrompts) - 200},
		{[]string{"--prompts", "6000"}, 6000 - int64(tasks.DataPrompts)},
	} {
		out, _, err := runCLI(t, append([]string{"data", "load-demo", "--json"}, tc.args...)...)
		var got struct {
			Added int64 `json:"prompts_added"`
		}
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Added != tc.want {
			t.Fatalf("load-demo %v: %v %q, want %d prompts added", tc.args, err, out, tc.want)
		}
	}
	if _, _, err := runCLI(t, "data", "load-demo", "--prompts", "3"); err == nil || !strings.Contains(err.Error(), "at least 5") {
		t.Errorf("--prompts 3: %v, want a refusal", err)
	}
}
