package runspec

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runstate"
)

func TestExampleSpecReadsAndValidates(t *testing.T) {
	f, err := os.Open("../examples/run.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Read(f, "run.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tiny, _ := Preset("tiny")
	tiny.ID = "strops-1"
	if ch := Changed(tiny, s); len(ch) != 0 {
		t.Errorf("the example differs from the tiny preset it documents in %v", ch)
	}
}

func TestReadOverridesThePreset(t *testing.T) {
	s, err := Read(strings.NewReader("preset: micro\nid: r1\nppo: {policy_lr: 1e-4}\nlabels: {deadline: 90m, exclude_labelers: [rand, first]}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	micro, _ := Preset("micro")
	if s.PPO.PolicyLR != 1e-4 || s.Labels.Deadline != 90*time.Minute || len(s.Labels.ExcludeLabelers) != 2 ||
		s.SFT.Steps != micro.SFT.Steps || s.ID != "r1" {
		t.Errorf("spec %+v", s)
	}
}

func TestBadSpecs(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml, set, want string
	}{
		"unknown key":      {yaml: "ppo: {polcy_lr: 1}\n", want: `unknown key "ppo.polcy_lr" (did you mean "ppo.policy_lr"?)`},
		"unknown preset":   {yaml: "preset: huge\n", want: `unknown preset "huge"`},
		"bad set":          {set: "ppo.policy_lr", want: "write key=value"},
		"unknown set key":  {set: "sft.stepz=3", want: `did you mean "sft.steps"`},
		"not a number":     {set: "sft.steps=many", want: "sft.steps"},
		"bad duration":     {set: "labels.deadline=soon", want: "deadline"},
		"duration no unit": {yaml: "labels: {deadline: 86400}\n", want: "has no unit"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Read(strings.NewReader(tc.yaml+"id: x\n"), "x.yaml")
			if err == nil && tc.set != "" {
				err = s.Set([]string{tc.set})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestValidateNamesEveryBadKey: one message lists every setting to fix.
func TestValidateNamesEveryBadKey(t *testing.T) {
	s, _ := Preset("micro")
	s.ID = "Bad Id"
	s.SFT.LR = -1
	s.Labels.K = 1
	s.PPO.MaxNewTokens = 40
	s.Retry.HeartbeatTimeout = 0
	err := s.Validate()
	for _, want := range []string{"id:", "sft:", "labels.k:", "ppo.max_new_tokens:", "retry.heartbeat_timeout:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestSampleBatch: labels.sample_batch and eval.sample_batch hold whole
// prompts' samples (at least labels.k and eval.samples); 0, what specs
// stored before the settings existed read as, samples all at once.
func TestSampleBatch(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string // "" = valid
	}{
		{set: nil},
		{set: []string{"labels.sample_batch=0", "eval.sample_batch=0"}},
		{set: []string{"labels.sample_batch=6", "eval.sample_batch=1"}}, // micro: k 6, eval.samples 1
		{set: []string{"labels.sample_batch=5"}, want: "labels.sample_batch: 5 is below labels.k (6)"},
		{set: []string{"labels.sample_batch=-1"}, want: "labels.sample_batch: -1: give the sequences sampled at once"},
		{set: []string{"eval.samples=4", "eval.sample_batch=3"}, want: "eval.sample_batch: 3 is below eval.samples (4)"},
		{set: []string{"eval.samples=0", "eval.sample_batch=-3"}},                               // no evaluation: nothing sampled
		{set: []string{"labels.collect=false", "labels.snapshot=s1", "labels.sample_batch=-1"}}, // no sampling
	} {
		s, _ := Preset("micro")
		s.ID = "r1"
		if err := s.Set(tc.set); err != nil {
			t.Fatal(err)
		}
		err := s.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want valid", tc.set, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error containing %q", tc.set, err, tc.want)
		}
	}
	if s, _ := Preset("tiny"); s.Labels.SampleBatch != DefaultSampleBatch || s.Eval.SampleBatch != DefaultSampleBatch {
		t.Errorf("tiny preset: labels.sample_batch %d, eval.sample_batch %d; want %d", s.Labels.SampleBatch, s.Eval.SampleBatch, DefaultSampleBatch)
	}
}

// TestStageHashFollowsTheStagesASettingFeeds: a PPO setting changes only
// PPO's (and later stages') hash; the seed changes every stage's; threads
// none.
func TestStageHashFollowsTheStagesASettingFeeds(t *testing.T) {
	a, _ := Preset("micro")
	b := a
	b.PPO.PolicyLR *= 2
	for _, st := range Stages {
		same := a.StageHash(st) == b.StageHash(st)
		if want := st != "ppo" && st != "eval"; same != want {
			t.Errorf("ppo.policy_lr: stage %s hash unchanged = %v, want %v", st, same, want)
		}
	}
	c := a
	c.Threads = 1
	c.Seed = a.Seed + 1
	d := a
	d.Threads = 1
	if a.StageHash("sft") == c.StageHash("sft") || a.StageHash("eval") != d.StageHash("eval") {
		t.Error("seed must change every stage's hash, threads none")
	}
	if got := Changed(a, b); len(got) != 1 || got[0] != "ppo.policy_lr" || FirstAffected(got[0]) != "ppo" {
		t.Errorf("Changed = %v", got)
	}
}

// TestStageHashChangesFromTheFirstAffectedStage: a setting changes the
// hash of the stage it feeds first and of every later one, and no earlier
// one; settings no result depends on (the gate's threshold) change none.
func TestStageHashChangesFromTheFirstAffectedStage(t *testing.T) {
	if got := fmt.Sprint(Stages); got != "[sft labels snapshot rm ppo eval]" {
		t.Fatalf("Stages = %s", got)
	}
	a, _ := Preset("micro")
	for _, tc := range []struct {
		set   string
		first runstate.Stage // "": no stage
	}{
		{"sft.steps=17", runstate.SFT},
		{"labels.k=3", runstate.Labels},
		{"labels.sample_batch=60", runstate.Labels},
		{"eval.sample_batch=8", runstate.Eval},
		{"rm.steps=7", runstate.RM},
		{"ppo.iterations=5", runstate.PPO},
		{"eval.samples=4", runstate.Eval},
		{"gate.min_rm_accuracy=0.9", ""},
		{"task_queues.ppo=gpu", ""},
	} {
		b := a
		if err := b.Set([]string{tc.set}); err != nil {
			t.Fatal(err)
		}
		var changed []runstate.Stage
		for _, st := range Stages {
			if a.StageHash(st) != b.StageHash(st) {
				changed = append(changed, st)
			}
		}
		var want []runstate.Stage
		if i := slices.Index(Stages, tc.first); i >= 0 {
			want = Stages[i:]
		}
		if !slices.Equal(changed, want) {
			t.Errorf("%s changes the hashes of %v, want %v", tc.set, changed, want)
		}
	}
}

func TestSetReplacesLists(t *testing.T) {
	s, err := Read(strings.NewReader("id: x\nlabels: {exclude_labelers: [rand, first, long]}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]string{"labels.exclude_labelers=[long]"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Labels.ExcludeLabelers; len(got) != 1 || got[0] != "long" {
		t.Errorf("exclude_labelers = %v, want [long]", got)
	}
}

func TestLargeSeedSurvivesASet(t *testing.T) {
	s, _ := Preset("micro")
	s.Seed = 1<<63 + 12345
	if err := s.Set([]string{"ppo.policy_lr=1e-4"}); err != nil {
		t.Fatal(err)
	}
	if s.Seed != 1<<63+12345 {
		t.Errorf("seed became %d", s.Seed)
	}
}

// A spec with model.base takes its shape from the base: shape keys next to
// it are refused, LoRA on top is allowed, no task is needed (the tokenizer
// is the model's), and the checks that need the shape wait until the base
// is resolved.
func TestBaseModel(t *testing.T) {
	read := func(y string) (Spec, error) { return Read(strings.NewReader(y), "x.yaml") }
	for _, y := range []string{
		"model: {base: gpt2-small, n_layer: 6}\n",
		"model: {n_embd: 128, base: gpt2-small}\n",
	} {
		if _, err := read(y); err == nil || !strings.Contains(err.Error(), "comes from the base model") {
			t.Errorf("%q: %v", y, err)
		}
	}
	s, err := read("id: r1\nmodel: {base: gpt2-small, lora_rank: 8}\ndata: {task: \"\"}\neval: {samples: 0}\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Model.Base != "gpt2-small" || s.Model.LoRARank != 8 {
		t.Fatalf("model: %+v", s.Model)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("an unresolved base with no task: %v", err)
	}
	if err := s.Set([]string{"model.n_head=2"}); err == nil {
		t.Error("--set of a shape key next to a base was accepted")
	}
	// Resolved: the shape is checked, and the base's hash is in every
	// stage hash.
	s.Model.BaseSHA256 = strings.Repeat("a", 64)
	s.Model.Config = model.Config{Vocab: 400, Context: 8, Layers: 2, Heads: 4, Width: 32, LoRARank: 8}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "max_new_tokens") {
		t.Errorf("a context too short for the responses: %v", err)
	}
	s.Model.Context = 64
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	other := s
	other.Model.BaseSHA256 = strings.Repeat("b", 64)
	for _, st := range Stages {
		if s.StageHash(st) == other.StageHash(st) {
			t.Errorf("stage %s: the hash does not change with the base model's", st)
		}
	}
	for y, want := range map[string]string{
		"data: {task: \"\"}\n":                                    "a run's tokenizer comes from its task or its base model",
		"data: {task: nope}\n":                                    `"nope": no such task`,
		"model: {base: \"Bad/Name\"}\n":                           "invalid model id",
		"data: {source: \"\"}\n":                                  "data.sft: empty, and so is data.source",
		"data: {prompts: p}\n":                                    "data.prompts: set, but data.sft is empty",
		"data: {template: llama}\n":                               `data.template: unknown template "llama"`,
		"data: {template: \"{{.Nope\"}\n":                         "data.template: template:",
		"data: {max_prompt_tokens: 30, max_response_tokens: 3}\n": "more than model.n_positions (32)",
		"data: {max_prompt_tokens: -1}\n":                         "data.max_prompt_tokens: limits must be 0 (none) or more",
		"eval: {judge: other}\n":                                  "eval.judge: \"other\": name a run's reward model (RUN_ID:rm)",
		"eval: {judge: \"models/Bad Name\"}\n":                    "eval.judge: invalid model id",
	} {
		s, err := read(y)
		if err == nil {
			err = s.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", y, err, want)
		}
	}
}
