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

	// The first refusing line stops the import; no summary is printed.
	out, stderr, err := runCLI(t, "labels", "import", bad, "--format", "ranking")
	if err == nil || !strings.Contains(err.Error(), "refused at line 2 (not_permutation)") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("bad file: %v", err)
	}
	if !strings.Contains(stderr, "line 2: not_permutation") || strings.Contains(stderr, "line 3") || out != "" {
		t.Errorf("bad file: want line 2 listed, reading stopped there, no summary; stdout:\n%s\nstderr:\n%s", out, stderr)
	}
	// A dry run reads on and lists every problem.
	out, stderr, err = runCLI(t, "labels", "import", bad, "--format", "ranking", "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "the file would be refused: 2 problems refuse it (bad_json 1, not_permutation 1)") || out != "" {
		t.Fatalf("dry run of the bad file: %v\n%s", err, out)
	}
	for _, want := range []string{"line 2: not_permutation", "line 3: bad_json"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	out, _, err = runCLI(t, "labels", "import", bad, "--format", "ranking", "--json")
	var refused struct {
		Refused  bool `json:"refused"`
		Problems []struct {
			Line int `json:"line"`
		} `json:"problems"`
	}
	if err == nil || json.Unmarshal([]byte(out), &refused) != nil || !refused.Refused || len(refused.Problems) != 1 || refused.Problems[0].Line != 2 {
		t.Errorf("--json of the bad file: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "labels", "import", good, "--format", "tsv"); err == nil || !strings.Contains(err.Error(), "use ranking, pairwise or hh") {
		t.Errorf("unknown format: %v", err)
	}
	out, stderr, err = runCLI(t, "labels", "import", good, "--format", "ranking")
	if err != nil || !strings.Contains(out, "imported 2 new comparisons") || !strings.Contains(stderr, "line 2: empty_response") {
		t.Fatalf("good file: %v\n%s\n%s", err, out, stderr)
	}
	out, _, err = runCLI(t, "labels", "import", good, "--format", "ranking")
	if err != nil || !strings.Contains(out, "nothing new: all 2 comparisons are stored already") {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	// Rows Postgres would reject are refused by a rule, with no summary
	// printed first.
	for _, tc := range []struct{ name, body, want string }{
		{"nul.jsonl", `{"prompt":"p\u0000","responses":["a","b"],"ranking":[0,1],"labeler":"ada"}`, "line 1: nul_character"},
		{"nolabeler.jsonl", `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":""}`, "line 1: empty_labeler"},
		{"k3.jsonl", `{"prompt":"p","responses":["a","b","c"],"ranking":[0,1,2],"labeler":"ada"}`, "line 1: too_many_responses"},
	} {
		out, stderr, err := runCLI(t, "labels", "import", write(tc.name, tc.body+"\n"), "--format", "ranking", "--max-k", "2")
		if err == nil || !strings.Contains(err.Error(), "refused at line 1") || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("%s: %v\nstdout:\n%s\nstderr:\n%s", tc.name, err, out, stderr)
		}
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
	// Imported text is printed with its control characters escaped.
	evil := write("evil.jsonl", `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":"ev\u001b[31mil\nfake line"}`+"\n")
	if _, _, err := runCLI(t, "labels", "import", evil, "--format", "ranking"); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, "labels", "audit")
	if err != nil || strings.ContainsRune(out, 0x1b) || !strings.Contains(out, `ev\x1b[31mil\nfake line`) {
		t.Errorf("audit prints the labeler raw: %v\n%s", err, out)
	}
	_, stderr, err = runCLI(t, "labels", "import", write("bad\nname.jsonl", "not json\n"), "--format", "ranking")
	if err == nil || !strings.Contains(err.Error(), `bad\nname.jsonl: refused at line 1`) || !strings.Contains(stderr, `bad\nname.jsonl: line 1: bad_json`) {
		t.Errorf("file name printed raw: %v\n%s", err, stderr)
	}

	if _, _, err := runCLI(t, "labels", "lineage", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("lineage of a missing run: %v", err)
	}
}
