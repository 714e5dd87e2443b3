package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/internal/testenv"
)

// TestDataCommands: import, re-import, a refused file, a dry run, stdin,
// list, show and an export that imports back as the same rows.
func TestDataCommands(t *testing.T) {
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", testenv.FreshDatabase(t))
	good := filepath.Join("..", "..", "dataset", "testdata", "messages.good.jsonl")
	bad := filepath.Join("..", "..", "dataset", "testdata", "messages.bad.jsonl")

	out, _, err := runCLI(t, "data", "import", good, "--dataset", "chat", "--format", "messages", "--all-turns")
	if err != nil || !strings.Contains(out, "2 lines read, 2 accepted (3 rows), 0 skipped") || !strings.Contains(out, "dataset chat: added 3 rows") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "data", "import", good, "--dataset", "chat", "--format", "messages", "--all-turns")
	if err != nil || !strings.Contains(out, "nothing new: all 3 rows are in it already") {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	out, stderr, err := runCLI(t, "data", "import", bad, "--dataset", "chat", "--format", "messages")
	if err == nil || !strings.Contains(err.Error(), "refused at line 2 (no_target); nothing was written") || out != "" ||
		!strings.Contains(stderr, "line 2: no_target") || strings.Contains(stderr, "line 3") {
		t.Fatalf("bad file: %v\nstdout %s\nstderr %s", err, out, stderr)
	}
	_, stderr, err = runCLI(t, "data", "import", bad, "--dataset", "chat", "--format", "messages", "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "dry run: the file would be refused: 9 problems") || !strings.Contains(stderr, "line 9: missing_field") {
		t.Fatalf("dry run: %v\n%s", err, stderr)
	}

	// The export, imported into a new dataset, is the same rows; a second
	// export is the same bytes.
	dir := t.TempDir()
	exported := filepath.Join(dir, "chat.jsonl")
	if _, _, err := runCLI(t, "data", "export", "chat", "-o", exported); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(exported)
	again, _, err := runCLI(t, "data", "export", "chat")
	if err != nil || again != string(first) || strings.Count(again, "\n") != 3 {
		t.Fatalf("export: %v; stdout differs from the file or has not 3 lines:\n%s\n%s", err, again, first)
	}
	out, _, err = runCLI(t, "data", "import", exported, "--dataset", "chat-copy", "--format", "prompt-completion")
	if err != nil || !strings.Contains(out, "added 3 rows") || !strings.Contains(out, "and 0 new prompts") {
		t.Fatalf("import of the export: %v\n%s", err, out)
	}
	copied, _, _ := runCLI(t, "data", "export", "chat-copy")
	if copied != string(first) {
		t.Fatalf("the copy exports\n%s\nwant\n%s", copied, first)
	}

	out, _, err = runCLI(t, "--output", "json", "data", "list")
	var list []struct {
		Name           string
		Rows, Imports  int
		Demonstrations int
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Name != "chat" || list[0].Rows != 3 || list[0].Imports != 2 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "data", "show", "chat", "--template", "chatml")
	for _, want := range []string{"dataset chat: 3 rows from 2 imports", "train:   3 demonstrations, 0 prompts",
		"repeats: 0 prompts have more than one row", "lengths in characters: prompt p50", "sample 3 (demonstration, train)"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("show: %v; want %q in\n%s", err, want, out)
		}
	}
	if _, _, err := runCLI(t, "data", "show", "nope"); err == nil || !strings.Contains(err.Error(), `no dataset "nope"`) {
		t.Fatalf("show of no dataset: %v", err)
	}

	// Prompts from stdin, gzip or not.
	root := newRootCmd()
	root.SetIn(strings.NewReader(`{"prompt": "Write a haiku."}` + "\n"))
	var b strings.Builder
	root.SetOut(&b)
	root.SetErr(&b)
	root.SetArgs([]string{"data", "import", "-", "--dataset", "prompts", "--format", "prompt", "--split", "heldout"})
	if err := root.Execute(); err != nil || !strings.Contains(b.String(), "-: 1 lines read") || !strings.Contains(b.String(), "(0 train, 1 held out)") {
		t.Fatalf("stdin: %v\n%s", err, b.String())
	}
}
