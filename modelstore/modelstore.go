// Package modelstore keeps the models a person brings and takes away:
// `model import` turns a Hugging Face GPT-2 folder (package hf) into a
// verified checkpoint in the object store (models/<name>/0/, the same
// manifest contract as stage checkpoints) recorded in Postgres; a run
// starts from it with model.base; and any stage's model, or an imported
// one, exports back to a folder Hugging Face tools load, with a model card
// that carries its lineage.
package modelstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/hf"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tasks"
	"github.com/instructflow/instructflow/tokenizer"
)

// database is what the store needs of Postgres.
type database interface {
	RecordModel(ctx context.Context, m postgres.Model) (bool, error)
	GetModel(ctx context.Context, name string) (postgres.Model, error)
	ListModels(ctx context.Context) ([]postgres.Model, error)
	RunsOfModel(ctx context.Context, name string) ([]string, error)
	GetRun(ctx context.Context, id string) (postgres.Run, error)
	GetStage(ctx context.Context, run, stage string) (postgres.Stage, error)
	Lineage(ctx context.Context, run string) ([]postgres.Lineage, error)
}

// Store is the models' side of Postgres and the object store.
type Store struct {
	DB    database
	Blobs checkpoint.Blobs
}

// Imported is what Import did.
type Imported struct {
	Model   postgres.Model `json:"model"`
	Created bool           `json:"created"` // false: the same model was there already
}

// Import validates the Hugging Face folder dir (nothing is stored when any
// problem is found), converts its weights to the engine's F32 form and
// stores them with its tokenizer files as the model called name.
// Importing the same files again is a no-op; another model under a taken
// name is refused.
func (s Store) Import(ctx context.Context, name, dir string) (Imported, error) {
	if err := storage.ValidateID("model", name); err != nil {
		return Imported{}, errkind.BadInputf("model import: %v", err)
	}
	prefix, _ := checkpoint.ModelPrefix(name)
	f, err := hf.Open(dir)
	if err != nil {
		return Imported{}, fmt.Errorf("model import %s: %w", name, err)
	}
	cfgJSON, err := model.MarshalConfig(f.Config)
	if err != nil {
		return Imported{}, err
	}
	weights := bytes.NewBuffer(make([]byte, 0, f.WeightsSize()))
	if err := f.WriteWeights(weights); err != nil {
		return Imported{}, fmt.Errorf("model import %s: %w", name, err)
	}
	files := []stage.File{{Name: "config.json", Data: cfgJSON}, {Name: "model.safetensors", Data: weights.Bytes()}}
	for _, n := range slices.Sorted(maps.Keys(f.TokenizerFiles)) {
		files = append(files, stage.File{Name: n, Data: f.TokenizerFiles[n]})
	}
	raw, err := checkpoint.ManifestOf(0, files)
	if err != nil {
		return Imported{}, fmt.Errorf("model import %s: %w", name, err)
	}
	id := sha(raw)
	old, err := s.DB.GetModel(ctx, name)
	switch {
	case err == nil && old.ManifestSHA == id:
		return Imported{Model: old}, nil
	case err == nil:
		return Imported{}, fmt.Errorf("model import: a different model (manifest %.12s, imported from %s) is called %s; models never change, so import this one under another name: %w",
			old.ManifestSHA, old.Source, name, errkind.Conflict)
	case !errors.Is(err, errkind.NotFound):
		return Imported{}, err
	}
	if _, err := (checkpoint.Store{Blobs: s.Blobs, Prefix: prefix}).Save(ctx, 0, files); err != nil {
		return Imported{}, fmt.Errorf("model import %s: %w", name, err)
	}
	info, err := json.Marshal(f.Tokenizer.Info())
	if err != nil {
		return Imported{}, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	rec := postgres.Model{
		Name: name, Source: abs, Architecture: f.Architecture, Config: cfgJSON, DTypes: f.DTypes,
		Params: f.Config.ParamCount(), Key: prefix + "0/", ManifestSHA: id, WeightsSHA: sha(weights.Bytes()),
		TokenizerSHA: tokenizerSHA(f.TokenizerFiles), Tokenizer: info,
	}
	created, err := s.DB.RecordModel(ctx, rec)
	if err != nil {
		return Imported{}, err
	}
	if !created { // imported at the same moment by someone else
		if rec, err = s.DB.GetModel(ctx, name); err != nil {
			return Imported{}, err
		}
	}
	return Imported{Model: rec, Created: created}, nil
}

// tokenizerSHA is the SHA-256 of the tokenizer files: each name with the
// SHA-256 of its bytes, by name.
func tokenizerSHA(files map[string][]byte) string {
	h := sha256.New()
	for _, n := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s %s\n", n, sha(files[n]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Shown is a model's record with the runs that started from it.
type Shown struct {
	postgres.Model
	Runs []string `json:"runs"`
}

// Show returns the model called name and the runs that used it.
func (s Store) Show(ctx context.Context, name string) (Shown, error) {
	m, err := s.DB.GetModel(ctx, name)
	if err != nil {
		return Shown{}, err
	}
	runs, err := s.DB.RunsOfModel(ctx, name)
	if err != nil {
		return Shown{}, err
	}
	return Shown{Model: m, Runs: runs}, nil
}

// Source is a model to export or sample from, read and verified.
type Source struct {
	Ref   string // models/NAME or RUN_ID:stage
	Model *model.Model
	Kind  hf.Kind
	// Tokenizer is the model's; TokenizerFiles its Hugging Face files (nil
	// for a run on a task's own tokenizer, which has none).
	Tokenizer      tokenizer.Tokenizer
	TokenizerFiles map[string][]byte
	// Card is the README.md of an export: what the model is and where it
	// came from.
	Card []byte
}

// Open reads the model ref names: "models/NAME" (or a bare NAME) for an
// imported model, "RUN_ID:STAGE" for a stage's final checkpoint (sft or
// ppo: the policy; rm: the reward model), or "RUN_ID" for the run's last
// finished policy (ppo, else sft).
func (s Store) Open(ctx context.Context, ref string) (Source, error) {
	if name, ok := strings.CutPrefix(ref, "models/"); ok {
		return s.openImported(ctx, name)
	}
	run, stageName, hasStage := strings.Cut(ref, ":")
	if !hasStage {
		if _, err := s.DB.GetModel(ctx, ref); err == nil {
			return s.openImported(ctx, ref)
		}
	}
	return s.openStage(ctx, run, stageName)
}

func (s Store) openImported(ctx context.Context, name string) (Source, error) {
	rec, err := s.DB.GetModel(ctx, name)
	if err != nil {
		return Source{}, err
	}
	prefix, err := checkpoint.ModelPrefix(name)
	if err != nil {
		return Source{}, errkind.BadInputf("%v", err)
	}
	m, err := loadModel(ctx, checkpoint.Store{Blobs: s.Blobs, Prefix: prefix}, 0, rec.ManifestSHA)
	if err != nil {
		return Source{}, fmt.Errorf("model %s: %w", name, err)
	}
	files, err := Files(ctx, s.Blobs, runspec.Model{Base: name, BaseSHA256: rec.ManifestSHA}, isTokenizerFile)
	if err != nil {
		return Source{}, err
	}
	tokFiles, tok, err := tokenizerFiles(files)
	if err != nil {
		return Source{}, fmt.Errorf("model %s: %w", name, err)
	}
	kind := hf.Policy
	if m.Config.ValueHead {
		kind = hf.Reward
	}
	card := modelCard(cardInput{Title: name, Kind: kind, Model: m, Base: &rec})
	return Source{Ref: "models/" + name, Model: m, Kind: kind, Tokenizer: tok, TokenizerFiles: tokFiles, Card: card}, nil
}

// Files reads the files of an imported model that want accepts (all when
// nil), verified, and checks that its manifest is m.BaseSHA256, the one
// recorded at import (or when a run started from it). A missing, damaged
// or different model is errkind.Corrupt or NotFound.
func Files(ctx context.Context, blobs checkpoint.Blobs, m runspec.Model, want func(name string) bool) (map[string][]byte, error) {
	prefix, err := checkpoint.ModelPrefix(m.Base)
	if err != nil {
		return nil, errkind.BadInputf("%v", err)
	}
	cp, err := checkpoint.Store{Blobs: blobs, Prefix: prefix}.LoadFiles(ctx, 0, want)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Base, err)
	}
	if cp.ID != m.BaseSHA256 {
		return nil, fmt.Errorf("model %s: stored manifest %.12s is not the recorded %.12s: %w", m.Base, cp.ID, m.BaseSHA256, errkind.Corrupt)
	}
	return cp.Files, nil
}

// loadModel builds the model of the checkpoint at step, whose manifest must
// hash to manifestSHA: config.json read whole, the weights streamed into the
// model and checked against the manifest as they come, so no copy of them
// is held beside the model.
func loadModel(ctx context.Context, st checkpoint.Store, step int64, manifestSHA string) (*model.Model, error) {
	cp, err := st.LoadFiles(ctx, step, func(n string) bool { return n == "config.json" })
	if err != nil {
		return nil, err
	}
	if cp.ID != manifestSHA {
		return nil, fmt.Errorf("checkpoint manifest %.12s is not the recorded %.12s: %w", cp.ID, manifestSHA, errkind.Corrupt)
	}
	cfg, err := model.ParseConfig(cp.Files["config.json"])
	if err != nil {
		return nil, err
	}
	m, err := model.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	r, err := st.OpenFile(ctx, step, "model.safetensors", manifestSHA)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := m.ReadWeights(r); err != nil {
		return nil, err
	}
	// The file is trusted once it was read to its end and its hash checked.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	return m, nil
}

// Tokenizer is the tokenizer of the imported model name, read from its
// verified files.
func (s Store) Tokenizer(ctx context.Context, name string) (tokenizer.Tokenizer, error) {
	rec, err := s.DB.GetModel(ctx, name)
	if err != nil {
		return nil, err
	}
	files, err := Files(ctx, s.Blobs, runspec.Model{Base: name, BaseSHA256: rec.ManifestSHA}, isTokenizerFile)
	if err != nil {
		return nil, err
	}
	_, tok, err := tokenizerFiles(files)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	return tok, nil
}

func isTokenizerFile(name string) bool { return slices.Contains(tokenizer.FileNames, name) }

// tokenizerFiles picks a checkpoint's tokenizer files and builds the
// tokenizer from them.
func tokenizerFiles(files map[string][]byte) (map[string][]byte, *tokenizer.FileBPE, error) {
	out := map[string][]byte{}
	for _, n := range tokenizer.FileNames {
		if b, ok := files[n]; ok {
			out[n] = b
		}
	}
	tok, err := tokenizer.FromFiles(out)
	if err != nil {
		return nil, nil, err
	}
	return out, tok, nil
}

func (s Store) openStage(ctx context.Context, run, stageName string) (Source, error) {
	rec, err := s.DB.GetRun(ctx, run)
	if errors.Is(err, errkind.NotFound) {
		return Source{}, errkind.BadInputf("model %s: no imported model or run has this name (see `instructflow model list` and `instructflow run list`)", run)
	}
	if err != nil {
		return Source{}, err
	}
	var spec runspec.Spec
	if err := json.Unmarshal(rec.Spec, &spec); err != nil {
		return Source{}, fmt.Errorf("run %s: stored spec: %w", run, err)
	}
	st, err := s.finishedStage(ctx, run, stageName)
	if err != nil {
		return Source{}, err
	}
	step, err := stepOf(st.CheckpointKey)
	if err != nil {
		return Source{}, fmt.Errorf("run %s stage %s: %w", run, st.Name, err)
	}
	prefix, err := checkpoint.StagePrefix(run, st.Name)
	if err != nil {
		return Source{}, err
	}
	m, err := loadModel(ctx, checkpoint.Store{Blobs: s.Blobs, Prefix: prefix}, step, st.CheckpointSHA)
	if err != nil {
		return Source{}, fmt.Errorf("run %s stage %s: %w", run, st.Name, err)
	}
	src := Source{Ref: run + ":" + st.Name, Model: m, Kind: hf.Policy}
	if runstate.Stage(st.Name) == runstate.RM {
		src.Kind = hf.Reward
	}
	var base *postgres.Model
	if spec.Model.Base != "" {
		files, err := Files(ctx, s.Blobs, spec.Model, isTokenizerFile)
		if err != nil {
			return Source{}, err
		}
		if src.TokenizerFiles, src.Tokenizer, err = tokenizerFiles(files); err != nil {
			return Source{}, fmt.Errorf("base model %s: %w", spec.Model.Base, err)
		}
		b, err := s.DB.GetModel(ctx, spec.Model.Base)
		if err != nil {
			return Source{}, err
		}
		base = &b
	} else {
		task, err := tasks.Lookup(spec.Data.Task)
		if err != nil {
			return Source{}, errkind.BadInputf("run %s: data.task: %v", run, err)
		}
		src.Tokenizer = task.Tokenizer()
	}
	lineage, err := s.DB.Lineage(ctx, run)
	if err != nil {
		return Source{}, err
	}
	var result struct {
		Metrics map[string]float64 `json:"metrics"`
	}
	_ = json.Unmarshal(st.Result, &result)
	src.Card = modelCard(cardInput{Title: run + ":" + st.Name, Kind: src.Kind, Model: m, Base: base, Spec: &spec,
		Stage: st, Metrics: result.Metrics, Lineage: lineage, Task: spec.Data.Task})
	return src, nil
}

// finishedStage returns the record of the stage named (or, when none is,
// of the run's last finished policy stage), which must have finished with
// a checkpoint.
func (s Store) finishedStage(ctx context.Context, run, name string) (postgres.Stage, error) {
	names := []string{name}
	if name == "" {
		names = []string{string(runstate.PPO), string(runstate.SFT)}
	} else if !slices.Contains([]runstate.Stage{runstate.SFT, runstate.RM, runstate.PPO}, runstate.Stage(name)) {
		return postgres.Stage{}, errkind.BadInputf("run %s: stage %q has no model; name sft, rm or ppo (RUN_ID:ppo)", run, name)
	}
	for _, n := range names {
		st, err := s.DB.GetStage(ctx, run, n)
		if errors.Is(err, errkind.NotFound) {
			continue
		}
		if err != nil {
			return postgres.Stage{}, err
		}
		if runstate.Status(st.Status) == runstate.Succeeded && st.CheckpointKey != "" {
			return st, nil
		}
	}
	if name == "" {
		return postgres.Stage{}, errkind.BadInputf("run %s: neither ppo nor sft has finished yet; wait for it (`instructflow run watch %s`) or name a finished stage", run, run)
	}
	return postgres.Stage{}, errkind.BadInputf("run %s: stage %s has not finished with a checkpoint; see `instructflow run status %s`", run, name, run)
}

// stepOf reads the step from a checkpoint key runs/<run>/<stage>/<step>/.
func stepOf(key string) (int64, error) {
	parts := strings.Split(strings.TrimSuffix(key, "/"), "/")
	step, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if err != nil || step < 0 {
		return 0, fmt.Errorf("checkpoint key %q names no step", key)
	}
	return step, nil
}

// Export writes src to dir as a Hugging Face folder.
func Export(ctx context.Context, src Source, dir string) error {
	e := hf.Export{Model: src.Model, Kind: src.Kind, TokenizerFiles: src.TokenizerFiles, Card: src.Card,
		EOT: src.Tokenizer.EOT(), Pad: src.Tokenizer.EOT()}
	if fb, ok := src.Tokenizer.(*tokenizer.FileBPE); ok {
		e.Pad = fb.Info().Pad.ID
	}
	if err := hf.Write(ctx, dir, e); err != nil {
		return fmt.Errorf("model export %s: %w", src.Ref, err)
	}
	return nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
