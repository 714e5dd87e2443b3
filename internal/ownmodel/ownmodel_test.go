package ownmodel

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/hf"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

const fixture = "../../hf/testdata/tiny-f16"

// runSpec is the micro preset on the imported model: no shape keys, its
// tokenizer is the model's.
const runSpec = `preset: micro
seed: 3
model: {base: %s}
labels: {deadline: 30m}
retry: {heartbeat_timeout: 10s, max_interval: 5s}
`

func TestRunFromImportedModel(t *testing.T) {
	cfg := testenv.Config(t)
	ctx := context.Background()
	c := testenv.NewCLI(t, "ownmodel")
	cli, dbURL := c.Run, c.DBURL

	// Model names are keys in the shared bucket: one of this test's own.
	name := "tiny-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	var im struct {
		Model   postgres.Model `json:"model"`
		Created bool           `json:"created"`
	}
	if err := json.Unmarshal([]byte(cli("model", "import", name, fixture, "--json")), &im); err != nil {
		t.Fatal(err)
	}
	if !im.Created || im.Model.Architecture != hf.ArchLMHead || im.Model.Params != 40320 || im.Model.DTypes[0] != "F16" {
		t.Fatalf("import: %+v", im)
	}
	cli("data", "load-demo")

	c.Start("worker.log", "worker")

	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	lctx, stop := context.WithCancel(ctx)
	labeling := make(chan error, 1)
	go func() { labeling <- control.LabelUntilDone(lctx, db, "") }()
	t.Cleanup(func() { stop(); <-labeling })

	specFile := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(specFile, []byte(fmt.Sprintf(runSpec, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := "own-" + name
	var rep control.Report
	if err := json.Unmarshal([]byte(cli("run", "start", "-f", specFile, "--set", "id="+run, "--wait", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "succeeded" || rep.Base == nil || rep.Base.Name != name || rep.Base.ManifestSHA != im.Model.ManifestSHA {
		t.Fatalf("run: status %s, base %+v (want %s %s)\n%s", rep.Status, rep.Base, name, im.Model.ManifestSHA, rep.Error)
	}
	for _, st := range rep.Stages {
		if st.Status != "succeeded" {
			t.Errorf("stage %s: %s %s", st.Name, st.Status, st.Error)
		}
	}
	t.Logf("summary: %v", rep.Summary)

	// The base model is named wherever the run's lineage is.
	if out := cli("labels", "lineage", run); !strings.Contains(out, "base model "+name) {
		t.Errorf("lineage does not name the base model:\n%s", out)
	}
	if out := cli("run", "report", run); !strings.Contains(out, "base model: "+name) {
		t.Errorf("report does not name the base model:\n%s", out)
	}
	if out := cli("model", "show", name); !strings.Contains(out, "used by runs: "+run) {
		t.Errorf("model show does not list the run:\n%s", out)
	}

	// The PPO policy exported: a Hugging Face folder with the model's
	// tokenizer, whose weights are the checkpoint's, bit for bit.
	dir := filepath.Join(t.TempDir(), "policy")
	cli("model", "export", run+":ppo", dir)
	f, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture != hf.ArchLMHead || f.Tokenizer.Info().Vocab != 400 {
		t.Errorf("export: %s, tokenizer %+v", f.Architecture, f.Tokenizer.Info())
	}
	var exported bytes.Buffer
	if err := f.WriteWeights(&exported); err != nil {
		t.Fatal(err)
	}
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	ppo := stageRecord(t, rep, "ppo")
	files := stageFiles(ctx, t, store, run, ppo)
	if !bytes.Equal(exported.Bytes(), files["model.safetensors"]) {
		t.Fatalf("exported weights (%d bytes) differ from the PPO checkpoint's (%d bytes)", exported.Len(), len(files["model.safetensors"]))
	}
	// The reward model: GPT2ForSequenceClassification, its head (with the
	// bias Hugging Face has no place for, in config.json) the checkpoint's.
	rmDir := filepath.Join(t.TempDir(), "rm")
	cli("model", "export", run+":rm", rmDir)
	rmf, err := hf.Open(rmDir)
	if err != nil {
		t.Fatal(err)
	}
	var rmWeights bytes.Buffer
	if err := rmf.WriteWeights(&rmWeights); err != nil {
		t.Fatal(err)
	}
	if !rmf.Config.ValueHead || rmf.Architecture != hf.ArchScorer || !bytes.Equal(rmWeights.Bytes(), stageFiles(ctx, t, store, run, stageRecord(t, rep, "rm"))["model.safetensors"]) {
		t.Errorf("exported reward model: %s %+v, weights equal to the checkpoint's: false", rmf.Architecture, rmf.Config)
	}
	card, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil || !bytes.Contains(card, []byte(im.Model.ManifestSHA)) || !bytes.Contains(card, []byte("label snapshot")) {
		t.Errorf("model card without the lineage (%v):\n%s", err, card)
	}

	// Its logits, from the folder, in the engine and in PyTorch.
	cfgJSON, _ := model.MarshalConfig(f.Config)
	m, err := model.Load(cfgJSON, exported.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ids := [][]int32{}
	for _, p := range []string{"reverse abc=cba", "upper hello=HELLO", "sort banana=aaabnn", "double ab=abab"} {
		got, err := f.Tokenizer.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got)
	}
	T := 0
	for _, s := range ids {
		T = max(T, len(s))
	}
	B, V := len(ids), f.Config.Vocab
	batch := model.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i, s := range ids {
		for j := range T {
			batch.Tokens[i*T+j] = 399
			if j < len(s) {
				batch.Tokens[i*T+j] = s[j]
			}
		}
	}
	out, err := m.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	torchCompare(t, dir, batch, out.Logits, B, T, V)

	// generate: greedy is deterministic, and --json gives ids and
	// log-probabilities.
	var g struct {
		IDs      []int32   `json:"ids"`
		LogProbs []float32 `json:"logprobs"`
	}
	gen := cli("model", "generate", run+":ppo", "--prompt", "reverse abc=", "--temperature", "0", "--max-new-tokens", "8", "--json")
	if err := json.Unmarshal([]byte(gen), &g); err != nil || len(g.IDs) == 0 || len(g.IDs) != len(g.LogProbs) {
		t.Fatalf("generate: %v\n%s", err, gen)
	}
	if again := cli("model", "generate", run+":ppo", "--prompt", "reverse abc=", "--temperature", "0", "--max-new-tokens", "8", "--json"); again != gen {
		t.Errorf("greedy generate differs between two calls:\n%s\n%s", gen, again)
	}
}

func stageRecord(t *testing.T, r control.Report, name string) postgres.Stage {
	t.Helper()
	for _, st := range r.Stages {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no stage %s in the report", name)
	return postgres.Stage{}
}

// stageFiles reads the final checkpoint of a finished stage.
func stageFiles(ctx context.Context, t *testing.T, blobs checkpoint.Blobs, run string, st postgres.Stage) map[string][]byte {
	t.Helper()
	prefix, err := checkpoint.StagePrefix(run, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	var step int64
	if _, err := fmt.Sscanf(strings.TrimPrefix(st.CheckpointKey, prefix), "%d/", &step); err != nil {
		t.Fatalf("checkpoint key %s: %v", st.CheckpointKey, err)
	}
	cp, err := checkpoint.Store{Blobs: blobs, Prefix: prefix}.Load(ctx, step)
	if err != nil || cp.ID != st.CheckpointSHA {
		t.Fatalf("checkpoint %s: %v (id %s, recorded %s)", st.CheckpointKey, err, cp.ID, st.CheckpointSHA)
	}
	return cp.Files
}

// torchCompare checks the engine's logits of the exported folder against
// PyTorch's (scripts/hf_gpt2.py, which builds Hugging Face GPT-2 semantics
// from the folder's files) to 1e-4, where Debian's python3-torch is
// installed; `make test` needs no torch, so elsewhere it only says so (the
// same semantics are checked on every run against the committed fixture in
// package hf).
func torchCompare(t *testing.T, dir string, b model.Batch, logits []float32, B, T, V int) {
	t.Helper()
	const python = "/usr/bin/python3"
	if exec.Command(python, "-c", "import torch").Run() != nil {
		t.Logf("PyTorch not installed (%s -c 'import torch' fails): the logits cross-check with PyTorch is left to the hf package's fixture", python)
		return
	}
	tmp := t.TempDir()
	ids := make([][]int32, B)
	for i := range ids {
		ids[i] = b.Tokens[i*T : (i+1)*T]
	}
	idsJSON, _ := json.Marshal(ids)
	idsFile, goFile := filepath.Join(tmp, "ids.json"), filepath.Join(tmp, "go.safetensors")
	if err := os.WriteFile(idsFile, idsJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goFile, logitsFile(logits, B, T, V), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "../../scripts/hf_gpt2.py", "compare", dir, "--ids", idsFile, "--logits", goFile, "--tol", "1e-4").CombinedOutput()
	if err != nil {
		t.Fatalf("PyTorch and the engine disagree on the exported policy's logits: %v\n%s", err, out)
	}
	t.Logf("PyTorch vs the engine on the exported policy: %s", strings.TrimSpace(string(out)))
}

// logitsFile is a safetensors file holding one F32 tensor "logits" [B,T,V].
func logitsFile(logits []float32, B, T, V int) []byte {
	header, _ := json.Marshal(map[string]any{"logits": map[string]any{"dtype": "F32", "shape": []int{B, T, V}, "data_offsets": []int{0, 4 * len(logits)}}})
	for len(header)%8 != 0 {
		header = append(header, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	for _, v := range logits {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return out
}
