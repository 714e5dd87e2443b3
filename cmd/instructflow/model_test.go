package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

const tinyModel = "../../hf/testdata/tiny-f16"

// copyDir copies the files of a flat folder.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The model commands against the real Postgres and object store: a bad
// folder is refused with its problems and leaves nothing; an import is
// immutable (the same files again are a no-op, other files under the name
// are refused); an export imports back to the same weights; generate
// refuses what it cannot do.
func TestModelCommands(t *testing.T) {
	cfg := testenv.Config(t)
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", testenv.FreshDatabase(t))
	ctx := context.Background()
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	name := "cmd-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")

	llama := filepath.Join(t.TempDir(), "llama")
	copyDir(t, tinyModel, llama)
	if err := os.WriteFile(filepath.Join(llama, "config.json"), []byte(`{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI(t, "model", "import", name, llama)
	if err == nil || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "LlamaForCausalLM") || !strings.Contains(err.Error(), "GPT2LMHeadModel") {
		t.Fatalf("a Llama folder: %v", err)
	}
	if keys, err := store.List(ctx, "models/"+name+"/"); err != nil || len(keys) != 0 {
		t.Fatalf("a refused import left %v (%v)", keys, err)
	}
	if out, _, err := runCLI(t, "model", "list"); err != nil || !strings.Contains(out, "no models imported yet") {
		t.Fatalf("list after a refused import: %v\n%s", err, out)
	}

	out, _, err := runCLI(t, "model", "import", name, tinyModel, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var im struct {
		Model   postgres.Model `json:"model"`
		Created bool           `json:"created"`
	}
	if err := json.Unmarshal([]byte(out), &im); err != nil || !im.Created {
		t.Fatalf("import: %v %s", err, out)
	}
	if out, _, err := runCLI(t, "model", "import", name, tinyModel); err != nil || !strings.Contains(out, "already imported") {
		t.Errorf("re-import: %v\n%s", err, out)
	}
	// Other weights under the taken name.
	other := filepath.Join(t.TempDir(), "other")
	copyDir(t, tinyModel, other)
	shard := filepath.Join(other, "model-00002-of-00002.safetensors")
	b, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 1 // a low mantissa bit of the last F16 value
	if err := os.WriteFile(shard, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "model", "import", name, other); err == nil || !strings.Contains(err.Error(), "a different model") || !strings.Contains(err.Error(), "another name") {
		t.Errorf("another model under a taken name: %v", err)
	}
	if out, _, err := runCLI(t, "model", "show", name); err != nil || !strings.Contains(out, "40320") || !strings.Contains(out, "byte-level BPE") || !strings.Contains(out, "<|endoftext|>") || !strings.Contains(out, "used by no run") {
		t.Errorf("show: %v\n%s", err, out)
	}

	// Exported and imported again: the same weights.
	exp := filepath.Join(t.TempDir(), "export")
	if _, _, err := runCLI(t, "model", "export", "--from", "models/"+name, exp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "model", "export", "--from", "models/"+name, exp); err == nil || !strings.Contains(err.Error(), exp) {
		t.Errorf("export over a folder with files in it: %v", err)
	}
	out, _, err = runCLI(t, "model", "import", name+"-again", exp, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var again struct {
		Model postgres.Model `json:"model"`
	}
	if err := json.Unmarshal([]byte(out), &again); err != nil || again.Model.WeightsSHA != im.Model.WeightsSHA || again.Model.TokenizerSHA == "" {
		t.Errorf("re-imported export: weights %s, imported %s (%v)", again.Model.WeightsSHA, im.Model.WeightsSHA, err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"model", "generate", name, "--prompt", "x", "--template", "llama"}, `--template "llama"`},
		{[]string{"model", "generate", name, "--prompt", "x", "--top-p", "0"}, "--top-p"},
		{[]string{"model", "generate", "no-such-model", "--prompt", "x"}, "no imported model or run"},
		{[]string{"model", "export", "run-1:eval", exp + "2"}, "run-1"},
		{[]string{"model", "export", "--from", "nope", exp + "3"}, "models/NAME"},
		{[]string{"model", "import", "Bad/Name", tinyModel}, "invalid model id"},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	var g generated
	out, _, err = runCLI(t, "model", "generate", name, "--prompt", "reverse ab=", "--max-new-tokens", "5", "--seed", "7", "--json")
	if err != nil || json.Unmarshal([]byte(out), &g) != nil || len(g.IDs) == 0 || len(g.IDs) > 5 || len(g.LogProbs) != len(g.IDs) {
		t.Errorf("generate: %v\n%s", err, out)
	}
}
