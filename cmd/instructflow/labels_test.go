package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/internal/testenv"
)

// runCLI runs one instructflow command line and returns stdout, stderr and
// the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

func TestLabelsCommands(t *testing.T) {
	dbURL := testenv.FreshDatabase(t)
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", dbURL)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.jsonl", `{"prompt":"reverse ab=","responses":["ba","ab"],"ranking":[0,1],"labeler":"ada"}
{"prompt":"upper ab=","responses":["Ab","AB"," "],"ranking":[1,0,2],"labeler":"bo"}
`)
	bad := write("bad.jsonl", `{"prompt":"reverse ab=","responses":["ba","ab"],"ranking":[0,1],"labeler":"ada"}
{"prompt":"x","responses":["a","b"],"ranking":[0,0],"labeler":"ada"}
not json
`)

	_, stderr, err := runCLI(t, "labels", "import", bad, "--format", "ranking")
	if err == nil || !strings.Contains(err.Error(), "refused: 2 problems") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("bad file: %v", err)
	}
	for _, want := range []string{"line 2: not_permutation", "line 3: bad_json"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, _, err := runCLI(t, "labels", "import", good, "--format", "tsv"); err == nil || !strings.Contains(err.Error(), "use ranking, pairwise or hh") {
		t.Errorf("unknown format: %v", err)
	}
	out, stderr, err := runCLI(t, "labels", "import", good, "--format", "ranking")
	if err != nil || !strings.Contains(out, "imported 2 new comparisons") || !strings.Contains(stderr, "line 2: empty_response") {
		t.Fatalf("good file: %v\n%s\n%s", err, out, stderr)
	}
	out, _, err = runCLI(t, "labels", "import", good, "--format", "ranking")
	if err != nil || !strings.Contains(out, "nothing new: all 2 comparisons are stored already") {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "labels", "snapshot", "s1"); err != nil {
		t.Fatal(err)
	}
	exported := filepath.Join(dir, "out.jsonl")
	if _, _, err := runCLI(t, "labels", "export", "--snapshot", "s1", "--format", "ranking", "-o", exported); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(exported)
	want, _ := os.ReadFile(good)
	if !bytes.Equal(got, want) {
		t.Errorf("export differs from the imported file:\n%s", got)
	}
	out, _, err = runCLI(t, "labels", "audit", "--snapshot", "s1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Comparisons int            `json:"comparisons"`
		FlagCounts  map[string]int `json:"flag_counts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Comparisons != 2 || rep.FlagCounts["empty_response"] != 1 {
		t.Errorf("audit --json: %v %+v", err, rep)
	}
	if _, _, err := runCLI(t, "labels", "lineage", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("lineage of a missing run: %v", err)
	}
}
