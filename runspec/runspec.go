// Package runspec is a pipeline run's spec: what a run trains, on which
// data, with which hyperparameters, and how the pipeline treats it (gates,
// task queues, retries). A spec starts from a preset, is read from YAML
// (with viper) and can be changed key by key (`--set ppo.policy_lr=1e-4`);
// unknown keys are refused. Its JSON form travels in workflow payloads and is
// stored with the run.
package runspec

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mitchellh/mapstructure"
	"github.com/spf13/viper"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/storage"
	"github.com/instructflow/instructflow/tasks"
)

// Spec is one run.
type Spec struct {
	ID   string `json:"id"`
	Seed uint64 `json:"seed"`
	// Threads each trainer uses (results do not depend on it).
	Threads int   `json:"threads"`
	Model   Model `json:"model"`
	Data    Data  `json:"data"`
	SFT     SFT   `json:"sft"`
	// Labels says where the reward model's comparisons come from.
	Labels Labels `json:"labels"`
	RM     RM     `json:"rm"`
	Gate   Gate   `json:"gate"`
	PPO    PPO    `json:"ppo"`
	Eval   Eval   `json:"eval"`
	Queues Queues `json:"task_queues"`
	Retry  Retry  `json:"retry"`
}

// SFT, RM and PPO are the training stages' settings: the built-in
// trainer's hyperparameters, and who trains the stage.
type (
	SFT struct {
		sft.Config `json:",squash"`
		Trainer    `json:",squash"`
	}
	RM struct {
		rewardmodel.Config `json:",squash"`
		Trainer            `json:",squash"`
	}
	PPO struct {
		ppo.Config `json:",squash"`
		Trainer    `json:",squash"`
	}
)

// Trainer says who trains a stage: the built-in engine, or an external
// process that speaks the trainer contract (docs/trainer-contract.md).
type Trainer struct {
	// Trainer is "" or "builtin" (the Go engine) or "exec" (Command).
	Trainer string `json:"trainer"`
	// Command is the external trainer's argv, run on the worker of the
	// stage's task queue with the job file named in INSTRUCTFLOW_JOB.
	Command []string `json:"command"`
	// Args are free-form settings passed to the external trainer as they
	// are (keys lower-case: sft.args.lr=1e-4).
	Args map[string]any `json:"args"`
	// Template renders the external trainer's data ("" = data.template).
	Template string `json:"template"`
	// Grace is how long the external trainer has, after SIGTERM, to save
	// and exit before its process group is killed (0 = 30s).
	Grace time.Duration `json:"grace"`
}

// Trainer kinds.
const (
	BuiltinTrainer = "builtin"
	ExecTrainer    = "exec"
)

// External reports whether an external process trains the stage.
func (t Trainer) External() bool { return t.Trainer == ExecTrainer }

// DefaultGrace is the external trainer's grace when Trainer.Grace is 0.
const DefaultGrace = 30 * time.Second

// GraceOrDefault is t.Grace, or DefaultGrace when unset.
func (t Trainer) GraceOrDefault() time.Duration { return cmp.Or(t.Grace, DefaultGrace) }

// TrainerOf returns the trainer settings of a training stage (zero for the
// other stages, which always run built in).
func (s Spec) TrainerOf(st runstate.Stage) Trainer {
	switch st {
	case runstate.SFT:
		return s.SFT.Trainer
	case runstate.RM:
		return s.RM.Trainer
	case runstate.PPO:
		return s.PPO.Trainer
	}
	return Trainer{}
}

// validate reports what cannot work in a stage's trainer settings.
func (t Trainer) validate(stage string, bad func(string, error)) {
	switch t.Trainer {
	case "", BuiltinTrainer:
		if len(t.Command) > 0 {
			bad(stage+".command", fmt.Errorf("set, but %s.trainer is %q: set %s.trainer: exec to run it", stage, t.Trainer, stage))
		}
	case ExecTrainer:
		if len(t.Command) == 0 || t.Command[0] == "" {
			bad(stage+".command", fmt.Errorf("empty: an exec trainer needs its argv, e.g. [torchrun, --standalone, --nproc_per_node, \"2\", trainers/torch/train.py]"))
		}
	default:
		bad(stage+".trainer", fmt.Errorf("%q: use builtin (the Go engine) or exec (an external process, see docs/trainer-contract.md)", t.Trainer))
	}
	if t.Template != "" {
		if _, err := chat.ParseTemplate(t.Template); err != nil {
			bad(stage+".template", err)
		}
	}
	if t.Grace < 0 {
		bad(stage+".grace", errors.New("must not be negative, e.g. 30s"))
	}
}

// isArgsKey reports whether key is a free-form trainer argument
// (sft.args.lr), which the spec takes without knowing it.
func isArgsKey(key string) bool {
	stage, rest, _ := strings.Cut(key, ".")
	name, ok := strings.CutPrefix(rest, "args.")
	return ok && name != "" && slices.Contains([]runstate.Stage{runstate.SFT, runstate.RM, runstate.PPO}, runstate.Stage(stage))
}

// Model is where the policy starts: a base model imported with `instructflow
// model import` (model.base; its shape and tokenizer come with it), or fresh
// weights of the shape given here (the vocabulary from the task's
// tokenizer). LoRA adapters (lora_rank) apply on top of either.
type Model struct {
	// Base names an imported model; when the run starts, BaseSHA256 (its
	// manifest hash, so that the stage hashes and the lineage name these
	// exact weights) and the shape are filled in from its record.
	Base         string `json:"base"`
	BaseSHA256   string `json:"base_sha256"`
	model.Config `json:",squash"`
}

// ShapeKeys are the model keys that a base model fixes.
var ShapeKeys = []string{"model.vocab_size", "model.n_positions", "model.n_layer", "model.n_head", "model.n_embd", "model.value_head"}

// Data names the prompts and demonstrations in Postgres and how the stages
// read them.
type Data struct {
	// SFT names the dataset (`data import`) whose demonstrations SFT trains
	// on, and PPO-ptx mixes in.
	SFT string `json:"sft"`
	// Prompts names the dataset whose prompts label collection, PPO and the
	// evaluation sample ("" = data.sft's).
	Prompts string `json:"prompts"`
	// Source is the older way to name both: the prompts' source column, as
	// `data load-demo` stores the demo task ("strops"). Used when data.sft
	// is "".
	Source string `json:"source"`
	// Template renders a conversation to model text in every stage:
	// plain (the prompt's text as stored; "" too), hh, chatml, or a Go
	// text/template (see package chat).
	Template string `json:"template"`
	// MaxPromptTokens cuts longer prompts from the left (0 = no cut);
	// MaxResponseTokens cuts longer demonstrations and label responses at
	// the right. Rows that do not fit the model's context after the cuts
	// (with room for the sampled tokens, where a stage samples) are
	// dropped; every stage counts what it cut and dropped.
	MaxPromptTokens   int `json:"max_prompt_tokens"`
	MaxResponseTokens int `json:"max_response_tokens"`
	// Task is the built-in task (package tasks) whose tokenizer and gold
	// judge the run uses: "strops", or "" for none (then the tokenizer is
	// the base model's, and the evaluation has no gold judge).
	Task string `json:"task"`
}

// Labels is the reward model's data: either collected in the run (samples
// of the SFT policy put in a labeling batch, then the run waits for labels)
// or an existing snapshot.
type Labels struct {
	Collect        bool    `json:"collect"`
	K              int     `json:"k"`               // responses per prompt
	Rounds         int     `json:"rounds"`          // passes over the train prompts with fresh samples
	Prompts        int     `json:"prompts"`         // train prompts per round (0 = all)
	HeldoutPrompts int     `json:"heldout_prompts"` // held-out prompts, labeled once, for RM evaluation
	MaxNewTokens   int     `json:"max_new_tokens"`
	Temperature    float32 `json:"temperature"`
	// SampleBatch is how many sequences (SampleBatch/K prompts) the policy
	// samples at once: memory is bounded by it, not by the prompts. The
	// samples depend on it. 0 samples every prompt of a round in one go,
	// as runs did before the setting existed (memory grows with the data).
	SampleBatch int `json:"sample_batch"`
	// Deadline is how long the run waits for labels; MinLabeled is the
	// share of items that must have a comparison by then, else it fails.
	Deadline   time.Duration `json:"deadline"`
	MinLabeled float64       `json:"min_labeled"`
	// How people label the batch in the labeling app (instructflow serve):
	// Overlap is the share of items that a second labeler gets too, so
	// agreement can be measured; Lease is how long a labeler holds an item
	// before it goes back to the pool (0 = 30m); Guidelines is Markdown
	// shown with every item; Flags are what a labeler may flag per
	// response (empty = InstructGPT's).
	Overlap    float64       `json:"overlap"`
	Lease      time.Duration `json:"lease"`
	Guidelines string        `json:"guidelines"`
	Flags      []string      `json:"flags"`
	// Snapshot uses an existing label snapshot instead of collecting.
	Snapshot string `json:"snapshot"`
	// Filters applied when the run snapshots its batch.
	ExcludeLabelers []string `json:"exclude_labelers"`
	ExcludeFlagged  bool     `json:"exclude_flagged"`
}

// Gate holds PPO until the reward model is good enough or a person approves.
type Gate struct {
	// MinRMAccuracy is the held-out accuracy (pairs ordered as labeled) the
	// reward model needs for PPO to start without approval; 0 = no gate.
	MinRMAccuracy float64 `json:"min_rm_accuracy"`
}

// Eval compares the PPO policy with the SFT policy on held-out prompts:
// their win rate under the run's reward model, under an independent judge
// (Judge) and under the task's gold judge, where there is one.
type Eval struct {
	Samples int `json:"samples"` // responses per held-out prompt and policy; 0 = skip
	// Judge is an independent reward model: another run's ("RUN_ID:rm")
	// or an imported one ("models/NAME", with a score head). "" = none.
	Judge string `json:"judge"`
	// Human puts the PPO-vs-SFT pairs in a labeling batch (which side is
	// shown first drawn per pair) and waits for people's labels as the
	// labels stage does (labels.deadline, labels.min_labeled): the human
	// win rate, InstructGPT's headline measure.
	Human bool `json:"human"`
	// SampleBatch is how many sequences (SampleBatch/Samples prompts) each
	// policy samples at once, as labels.sample_batch; 0 = all at once.
	SampleBatch int `json:"sample_batch"`
}

// Queues routes stages to task queues ("" = the workflow's queue), so
// training can run on a pool of its own.
type Queues struct {
	SFT    string `json:"sft"`
	Labels string `json:"labels"`
	RM     string `json:"rm"`
	PPO    string `json:"ppo"`
	Eval   string `json:"eval"`
}

// Retry is how activities are retried.
type Retry struct {
	// HeartbeatTimeout: a worker silent for this long is presumed dead and
	// its activity is retried elsewhere.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
	MaxInterval      time.Duration `json:"max_interval"`
	MaxAttempts      int           `json:"max_attempts"` // 0 = until it works or fails for good
}

// DefaultSampleBatch is the presets' labels.sample_batch and
// eval.sample_batch: sequences per sampling call, enough for the engine's
// matrix multiplies to run at full speed, few enough that the key/value
// cache stays small (a GPT-2 124M sequence of 1,024 tokens has one of about
// 75 MB; the tiny model's 32 positions, about 50 KB).
const DefaultSampleBatch = 512

// Presets are the named starting points.
var Presets = []string{"tiny", "micro"}

// Preset returns a named spec. tiny is the demo run (a few minutes on 2
// cores, PPO clearly beats SFT); micro is the same pipeline with a tenth of
// the work, for tests and a first look.
func Preset(name string) (Spec, error) {
	s := Spec{
		Seed: 1, Threads: 2,
		Model: Model{Config: model.Config{Context: 32, Layers: 3, Heads: 4, Width: 64}}, // Vocab from the tokenizer
		Data:  Data{Source: "strops", Task: "strops"},
		SFT: SFT{Config: sft.Config{Steps: 1200, BatchSize: 32, LR: 3e-3, MinLR: 3e-4, Warmup: 20, WeightDecay: 0.01,
			ClipNorm: 1, CheckpointEvery: 400, EvalEvery: 200}},
		Labels: Labels{Collect: true, K: 6, Rounds: 4, Prompts: 4000, HeldoutPrompts: 400,
			MaxNewTokens: 14, Temperature: 1, SampleBatch: DefaultSampleBatch, Deadline: 24 * time.Hour, MinLabeled: 0.9, ExcludeLabelers: []string{},
			Overlap: 0.1, Flags: []string{}},
		RM: RM{Config: rewardmodel.Config{Steps: 4000, BatchSize: 32, LR: 1e-3, MinLR: 1e-4, Warmup: 20, WeightDecay: 0.01,
			ClipNorm: 1, CheckpointEvery: 1000, EvalEvery: 1000}},
		Gate: Gate{MinRMAccuracy: 0.55}, // better than chance (0.5); the tiny run measured 0.66
		PPO: PPO{Config: ppo.Config{Iterations: 150, RolloutBatch: 256, MaxNewTokens: 14, Epochs: 2, MiniBatch: 128,
			PolicyLR: 6e-4, ValueLR: 1e-3, ClipRange: 0.2, ValueClip: 0.2, EntropyCoef: 0,
			Gamma: 1, Lambda: 1, KLCoef: 0.1, AdaptiveKL: true, TargetKL: 5, KLHorizon: 2000,
			NormalizeReward: true, PtxCoef: 0.5, PtxBatch: 64, ClipNorm: 1, CheckpointEvery: 50}},
		Eval: Eval{Samples: 4, SampleBatch: DefaultSampleBatch},
		// 100 attempts 30 s apart ride out outages of most of an hour;
		// then the run fails and `run resume` continues it.
		Retry: Retry{HeartbeatTimeout: 20 * time.Second, MaxInterval: 30 * time.Second, MaxAttempts: 100},
	}
	switch name {
	case "tiny":
	case "micro":
		s.SFT.Steps, s.SFT.CheckpointEvery, s.SFT.EvalEvery = 300, 50, 100
		s.Labels.Rounds, s.Labels.Prompts, s.Labels.HeldoutPrompts = 1, 600, 100
		s.RM.Steps, s.RM.CheckpointEvery, s.RM.EvalEvery = 300, 50, 300
		s.PPO.Iterations, s.PPO.RolloutBatch, s.PPO.MiniBatch, s.PPO.CheckpointEvery = 16, 64, 32, 4
		s.Gate.MinRMAccuracy = 0
		s.Eval.Samples = 1
	default:
		return Spec{}, fmt.Errorf("runspec: unknown preset %q (known: %s)", name, strings.Join(Presets, ", "))
	}
	return s, nil
}

// Read reads a YAML spec on top of a preset: the key "preset" (default
// tiny) picks it, every other key overrides it. name is for messages.
func Read(r io.Reader, name string) (Spec, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(r); err != nil {
		return Spec{}, fmt.Errorf("runspec: read %s: %w", name, err)
	}
	settings := v.AllSettings()
	preset := "tiny"
	if p, ok := settings["preset"]; ok {
		preset = fmt.Sprint(p)
		delete(settings, "preset")
	}
	s, err := Preset(preset)
	if err != nil {
		return Spec{}, fmt.Errorf("runspec: %s: %w", name, err)
	}
	if err := s.apply(settings); err != nil {
		return Spec{}, fmt.Errorf("runspec: %s: %w", name, err)
	}
	return s, nil
}

// Set changes settings given as key=value (`ppo.policy_lr=1e-4`).
func (s *Spec) Set(assignments []string) error {
	for _, a := range assignments {
		key, value, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return fmt.Errorf("runspec: --set %q: write key=value, e.g. ppo.policy_lr=1e-4", a)
		}
		m := map[string]any{}
		cur := m
		parts := strings.Split(strings.ToLower(key), ".")
		for _, p := range parts[:len(parts)-1] {
			next := map[string]any{}
			cur[p] = next
			cur = next
		}
		var val any = value
		switch {
		case isArgsKey(strings.ToLower(key)): // a free-form argument: a JSON scalar (1e-4, true) or else a string
			var v any
			if json.Unmarshal([]byte(value), &v) == nil {
				val = v
			}
		case strings.HasPrefix(value, "["): // a list: labels.exclude_labelers=[a,b]
			val = strings.FieldsFunc(strings.Trim(value, "[]"), func(r rune) bool { return r == ',' || r == ' ' })
		}
		cur[parts[len(parts)-1]] = val
		if err := s.apply(m); err != nil {
			return fmt.Errorf("runspec: --set %s: %w", a, err)
		}
	}
	return nil
}

// apply decodes settings (nested maps, as YAML gives them) onto s,
// refusing keys the spec does not have. Settings replace whole values
// (a list replaces the list).
func (s *Spec) apply(settings map[string]any) error {
	known := Keys()
	given := slices.Sorted(maps.Keys(flatten(settings)))
	for _, k := range given {
		if !slices.Contains(known, k) && !isArgsKey(k) {
			return fmt.Errorf("unknown key %q%s", k, config.Suggest(k, known))
		}
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	var merged map[string]any
	dj := json.NewDecoder(bytes.NewReader(data))
	dj.UseNumber() // exact: a uint64 seed does not pass through float64
	if err := dj.Decode(&merged); err != nil {
		return err
	}
	merge(merged, settings)
	var out Spec
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName: "json", WeaklyTypedInput: true, ErrorUnused: true, Squash: true, Result: &out,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(durationHook, mapstructure.StringToSliceHookFunc(",")),
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(merged); err != nil {
		return err
	}
	for _, args := range []map[string]any{out.SFT.Args, out.RM.Args, out.PPO.Args} {
		for k, v := range args {
			if n, ok := v.(json.Number); ok { // the spec's own JSON form, read back exactly
				args[k], _ = n.Float64()
			}
		}
	}
	if out.Model.Base != "" {
		for _, k := range given {
			if slices.Contains(ShapeKeys, k) {
				return fmt.Errorf("%s: the shape comes from the base model %q (model.base); remove %s, or drop model.base to train a fresh model of your own shape", k, out.Model.Base, k)
			}
		}
	}
	*s = out
	return nil
}

// durationHook reads a duration from "90m" (YAML, --set) or from
// nanoseconds (the spec's JSON form).
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case json.Number: // nanoseconds, as the spec's JSON form writes them
		n, err := v.Int64()
		return time.Duration(n), err
	case string:
		return time.ParseDuration(v)
	case int, int64, uint64, float64:
		return nil, fmt.Errorf("duration %v has no unit: write e.g. 24h, 90m or 30s", v)
	}
	return data, nil
}

// merge writes src's leaves into dst, descending into maps both have.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, sub)
				continue
			}
		}
		dst[k] = v
	}
}

// Keys lists every settable key, dotted.
func Keys() []string {
	s, _ := Preset("tiny")
	keys := slices.Sorted(maps.Keys(flatValues(s)))
	return append(keys, "model.lora_rank", "model.lora_alpha")
}

// Validate reports every setting that cannot work, each naming its key.
func (s Spec) Validate() error {
	var errs []error
	bad := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	bad("id", storage.ValidateID("run", s.ID))
	if s.Threads < 1 {
		bad("threads", fmt.Errorf("%d: use 1 or more", s.Threads))
	}
	// An unresolved base model (Resolve has not looked it up yet) has no
	// shape to check: the checks that need one wait for it.
	shaped := s.Model.Base == "" || s.Model.BaseSHA256 != ""
	switch m := s.Model; {
	case m.Base != "":
		bad("model.base", storage.ValidateID("model", m.Base))
		if shaped {
			bad("model", m.Config.Validate())
		}
	default:
		m.Vocab = max(m.Vocab, 1) // from the task's tokenizer
		bad("model", m.Config.Validate())
	}
	if s.Data.Source == "" && s.Data.SFT == "" {
		bad("data.sft", errors.New("empty, and so is data.source: name the dataset of demonstrations (`instructflow data list`)"))
	}
	if s.Data.Prompts != "" && s.Data.SFT == "" {
		bad("data.prompts", errors.New("set, but data.sft is empty: name the demonstrations' dataset too"))
	}
	if _, err := s.Template(); err != nil {
		errs = append(errs, err)
	}
	d := s.Data
	if d.MaxPromptTokens < 0 || d.MaxResponseTokens < 0 {
		bad("data.max_prompt_tokens", errors.New("limits must be 0 (none) or more"))
	} else if shaped && d.MaxPromptTokens+d.MaxResponseTokens > s.Model.Context {
		bad("data.max_prompt_tokens", fmt.Errorf("%d + data.max_response_tokens %d: more than model.n_positions (%d); no row could use both", d.MaxPromptTokens, d.MaxResponseTokens, s.Model.Context))
	}
	switch {
	case s.Data.Task != "" && !slices.Contains(tasks.Names(), s.Data.Task):
		bad("data.task", fmt.Errorf("%q: no such task (known: %s; or \"\" for none, with model.base)", s.Data.Task, strings.Join(tasks.Names(), ", ")))
	case s.Data.Task == "" && s.Model.Base == "":
		bad("data.task", errors.New("empty, and no model.base: a run's tokenizer comes from its task or its base model; name one"))
	}
	if s.Eval.Human && s.Eval.Samples == 0 {
		bad("eval.human", errors.New("true, but eval.samples is 0: sample at least 1 response per prompt to compare"))
	}
	if s.Eval.Human && (s.Labels.Deadline <= 0 || !(s.Labels.MinLabeled > 0 && s.Labels.MinLabeled <= 1)) {
		bad("eval.human", errors.New("waits as labels collection does: set labels.deadline (e.g. 24h) and labels.min_labeled (a share in (0, 1])"))
	}
	if j := s.Eval.Judge; j != "" {
		run, st, ok := strings.Cut(j, ":")
		switch {
		case strings.HasPrefix(j, "models/"):
			bad("eval.judge", storage.ValidateID("model", strings.TrimPrefix(j, "models/")))
		case !ok || st != string(runstate.RM):
			bad("eval.judge", fmt.Errorf("%q: name a run's reward model (RUN_ID:rm) or an imported one (models/NAME)", j))
		case run == s.ID:
			bad("eval.judge", fmt.Errorf("%q is this run's own reward model, which the evaluation uses anyway; name another run's or an imported one", j))
		default:
			bad("eval.judge", storage.ValidateID("run", run))
		}
	}
	bad("sft", s.SFT.Validate())
	s.SFT.Trainer.validate(string(runstate.SFT), bad)
	s.RM.Trainer.validate(string(runstate.RM), bad)
	s.PPO.Trainer.validate(string(runstate.PPO), bad)
	l := s.Labels
	switch {
	case l.Collect && l.Snapshot != "":
		bad("labels", errors.New("collect and snapshot both set: collect new labels or name a snapshot, not both"))
	case !l.Collect && l.Snapshot == "":
		bad("labels", errors.New("set labels.collect: true or name an existing snapshot in labels.snapshot"))
	case l.Collect:
		if l.K < 2 {
			bad("labels.k", fmt.Errorf("%d: rank at least 2 responses per prompt", l.K))
		}
		if l.Rounds < 1 {
			bad("labels.rounds", fmt.Errorf("%d: use 1 or more", l.Rounds))
		}
		if l.Prompts < 0 || l.HeldoutPrompts < 1 {
			bad("labels.heldout_prompts", errors.New("held-out prompts must be 1 or more (the reward model is evaluated on them)"))
		}
		if l.MaxNewTokens < 1 || shaped && l.MaxNewTokens >= s.Model.Context {
			bad("labels.max_new_tokens", fmt.Errorf("%d: use 1 to model.n_positions-1", l.MaxNewTokens))
		}
		if !(l.Temperature > 0) {
			bad("labels.temperature", fmt.Errorf("%v: must be > 0", l.Temperature))
		}
		bad("labels.sample_batch", sampleBatch(l.SampleBatch, l.K, "labels.k"))
		if l.Deadline <= 0 {
			bad("labels.deadline", errors.New("must be positive, e.g. 24h"))
		}
		if !(l.MinLabeled > 0 && l.MinLabeled <= 1) {
			bad("labels.min_labeled", fmt.Errorf("%v: a share in (0, 1]", l.MinLabeled))
		}
		if !(l.Overlap >= 0 && l.Overlap <= 1) {
			bad("labels.overlap", fmt.Errorf("%v: a share of items in [0, 1] (0.1 = one item in ten gets a second labeler)", l.Overlap))
		}
		if l.Lease < 0 {
			bad("labels.lease", errors.New("must be positive, e.g. 30m"))
		}
		for i, f := range l.Flags {
			if strings.TrimSpace(f) == "" || slices.Index(l.Flags, f) != i {
				bad("labels.flags", fmt.Errorf("%q: flags are distinct, non-empty names", f))
				break
			}
		}
	}
	bad("rm", s.RM.Validate())
	if s.Gate.MinRMAccuracy < 0 || s.Gate.MinRMAccuracy > 1 {
		bad("gate.min_rm_accuracy", fmt.Errorf("%v: a share in [0, 1]", s.Gate.MinRMAccuracy))
	}
	bad("ppo", s.PPO.Validate())
	if shaped && s.PPO.MaxNewTokens >= s.Model.Context {
		bad("ppo.max_new_tokens", fmt.Errorf("%d: must be below model.n_positions (%d)", s.PPO.MaxNewTokens, s.Model.Context))
	}
	if s.Eval.Samples < 0 {
		bad("eval.samples", fmt.Errorf("%d: use 0 (skip) or more", s.Eval.Samples))
	} else if s.Eval.Samples > 0 {
		bad("eval.sample_batch", sampleBatch(s.Eval.SampleBatch, s.Eval.Samples, "eval.samples"))
	}
	if s.Retry.HeartbeatTimeout < time.Second {
		bad("retry.heartbeat_timeout", fmt.Errorf("%v: use 1s or more", s.Retry.HeartbeatTimeout))
	}
	if s.Retry.MaxInterval < time.Second {
		bad("retry.max_interval", fmt.Errorf("%v: use 1s or more", s.Retry.MaxInterval))
	}
	if s.Retry.MaxAttempts < 0 {
		bad("retry.max_attempts", fmt.Errorf("%d: use 0 (no limit) or more", s.Retry.MaxAttempts))
	}
	if len(errs) > 0 {
		return fmt.Errorf("run spec: %w", errors.Join(errs...))
	}
	return nil
}

// Template is the spec's chat template (data.template; "" is plain).
func (s Spec) Template() (chat.Template, error) {
	t, err := chat.ParseTemplate(cmp.Or(s.Data.Template, "plain"))
	if err != nil {
		return nil, fmt.Errorf("data.template: %w", err)
	}
	return t, nil
}

// sampleBatch checks a sample_batch setting against the samples per prompt
// (perKey's value), which go into one sampling call together.
func sampleBatch(v, perPrompt int, perKey string) error {
	switch {
	case v < 0:
		return fmt.Errorf("%d: give the sequences sampled at once, e.g. %d (or 0 for all at once, which needs memory in proportion to the prompts)", v, DefaultSampleBatch)
	case v > 0 && v < perPrompt:
		return fmt.Errorf("%d is below %s (%d): a prompt's samples are drawn in one call; use %d or more, e.g. %d", v, perKey, perPrompt, perPrompt, max(perPrompt, DefaultSampleBatch))
	}
	return nil
}

// Stages are the stages whose results depend on settings, in order:
// runstate.Stages without the gate, which has no activity and no result of
// its own (its threshold, gate.min_rm_accuracy, changes no stage's result).
var Stages = slices.DeleteFunc(slices.Clone(runstate.Stages), func(s runstate.Stage) bool { return s == runstate.Gate })

// SamplingKeys are the label settings used when the labeling batch is
// sampled: once it exists they no longer take effect.
var SamplingKeys = []string{"labels.k", "labels.rounds", "labels.prompts", "labels.heldout_prompts",
	"labels.max_new_tokens", "labels.temperature", "labels.sample_batch"}

// owner maps a top-level key to the first stage whose result depends on it;
// keys not listed (threads, gate, task_queues, retry) change no result.
var owner = map[string]runstate.Stage{
	"id": runstate.SFT, "seed": runstate.SFT, "model": runstate.SFT, "data": runstate.SFT, "sft": runstate.SFT,
	"labels": runstate.Labels, "rm": runstate.RM, "ppo": runstate.PPO, "eval": runstate.Eval,
}

// StageHash is the SHA-256 of every setting stage's result depends on (its
// own and all earlier stages'): a finished stage with the same hash can be
// reused. Settings at their zero value are left out, so a setting added by
// a later build (zero in specs stored before it) leaves the hash alone.
func (s Spec) StageHash(stage runstate.Stage) string {
	upto := slices.Index(Stages, stage)
	vals := flatValues(s)
	keys := make([]string, 0, len(vals))
	for k, v := range vals {
		o := FirstAffected(k)
		if o == "" || slices.Index(Stages, o) > upto {
			continue
		}
		switch v {
		case "0", "false", `""`, "null", "[]", "{}":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, vals[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Changed lists the dotted keys whose values differ between a and b.
func Changed(a, b Spec) []string {
	fa, fb := flatValues(a), flatValues(b)
	var out []string
	for k, v := range fa {
		if fb[k] != v {
			out = append(out, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// FirstAffected is the first stage whose result a change of key affects
// ("" when none does).
func FirstAffected(key string) runstate.Stage {
	top, rest, _ := strings.Cut(key, ".")
	if rest == "grace" { // how long an external trainer has to stop changes no result
		return ""
	}
	return owner[top]
}

func flatValues(s Spec) map[string]string {
	data, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return flatten(m)
}

// flatten maps each leaf of nested maps to its dotted key and its value
// as JSON.
func flatten(m map[string]any) map[string]string {
	out := map[string]string{}
	var walk func(string, any)
	walk = func(prefix string, v any) {
		if sub, ok := v.(map[string]any); ok {
			for k, x := range sub {
				walk(prefix+k+".", x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[strings.TrimSuffix(prefix, ".")] = string(b)
	}
	walk("", m)
	return out
}
