// Package demo runs the whole InstructGPT recipe in process on the demo task
// (package tasks): SFT on labeler demonstrations, label collection by
// simulated labelers ranking K samples of the SFT policy, the reward model,
// and PPO; then it judges SFT and PPO on held-out prompts with the gold
// judge, which no stage ever saw. It is the proof that RLHF works here, and
// the workload of the pipeline's quickstart.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/sampling"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tasks"
	"github.com/instructflow/instructflow/tokenizer"
)

// Config is the whole demo run.
type Config struct {
	Seed      uint64
	Threads   int
	Examples  int          // prompts of the task, one in five held out
	Model     model.Config // Vocab is filled in from the tokenizer
	DemoError float64      // rate of slips in labeler demonstrations
	SFT       sft.Config
	// Label collection: K samples of the SFT policy for each of RMPrompts
	// training prompts (and RMHeldout held-out ones), ranked by one
	// simulated labeler each.
	K, RMPrompts, RMHeldout int
	// LabelRounds repeats the collection over the training prompts with
	// fresh samples and another labeler each time.
	LabelRounds int
	RM          rewardmodel.Config
	PPO         ppo.Config
	// EvalSamples responses per held-out prompt from each policy.
	EvalSamples int
	// SampleBatch is how many sequences a policy samples at once (the
	// preset's labels.sample_batch and eval.sample_batch; 0 = all).
	SampleBatch int
}

// DefaultConfig is the tiny run that finishes in a few minutes on 2 cores:
// the pipeline's tiny preset (runspec), on the demo task's stored data.
func DefaultConfig() Config {
	s, err := runspec.Preset("tiny")
	if err != nil {
		panic("demo: " + err.Error()) // the preset is built in
	}
	return Config{
		Seed: s.Seed, Threads: s.Threads, Examples: tasks.DataPrompts, Model: s.Model.Config, DemoError: tasks.DemoSlips,
		SFT: s.SFT.Config, K: s.Labels.K, RMPrompts: s.Labels.Prompts, RMHeldout: s.Labels.HeldoutPrompts,
		LabelRounds: s.Labels.Rounds, RM: s.RM.Config, PPO: s.PPO.Config, EvalSamples: s.Eval.Samples,
		SampleBatch: s.Labels.SampleBatch,
	}
}

// Report is what the demo measured.
type Report struct {
	SFT          sft.Result         `json:"sft"`
	RM           rewardmodel.Result `json:"rm"`
	PPO          ppo.Result         `json:"ppo"`
	RMGoldAcc    float64            `json:"rm_gold_accuracy"` // held-out pairs ordered as the gold judge orders them
	RMGoldPairs  int                `json:"rm_gold_pairs"`
	LabelGoldAcc float64            `json:"label_gold_accuracy"` // the same pairs as the labelers ordered them
	WinRate      float64            `json:"win_rate"`            // PPO over SFT on held-out prompts, ties split
	SFTGold      float64            `json:"sft_gold"`            // mean gold score
	PPOGold      float64            `json:"ppo_gold"`
	KL           float64            `json:"kl"` // per response, PPO policy vs SFT reference, held-out
	TargetKL     float64            `json:"target_kl"`
	Seconds      map[string]float64 `json:"seconds"`
	Checkpoints  string             `json:"checkpoints"`
}

// String is the one-line summary.
func (r Report) String() string {
	return fmt.Sprintf("win rate PPO vs SFT %.1f%% (gold %.3f -> %.3f), RM held-out gold accuracy %.1f%% (labels %.1f%%, %d pairs), KL %.2f nats (target %.2f); SFT %.0fs, labels %.0fs, RM %.0fs, PPO %.0fs",
		100*r.WinRate, r.SFTGold, r.PPOGold, 100*r.RMGoldAcc, 100*r.LabelGoldAcc, r.RMGoldPairs, r.KL, r.TargetKL,
		r.Seconds["sft"], r.Seconds["labels"], r.Seconds["rm"], r.Seconds["ppo"])
}

// Run runs the recipe with checkpoints under dir (one folder per stage); a
// rerun with the same dir continues each stage from its latest checkpoint.
func Run(ctx context.Context, cfg Config, dir string, log func(string, stage.Report)) (Report, error) {
	rep := Report{Seconds: map[string]float64{}, TargetKL: float64(cfg.PPO.TargetKL), Checkpoints: dir}
	tok := tasks.Tokenizer()
	cfg.Model.Vocab = tok.VocabSize()
	for _, c := range []*uint64{&cfg.SFT.Seed, &cfg.RM.Seed, &cfg.PPO.Seed} {
		*c = cfg.Seed
	}
	cfg.SFT.Threads, cfg.RM.Threads, cfg.PPO.Threads = cfg.Threads, cfg.Threads, cfg.Threads
	progress := func(name string) stage.Progress {
		return func(r stage.Report) error {
			if log != nil {
				log(name, r)
			}
			return nil
		}
	}
	data := tasks.NewData(cfg.Seed, cfg.Examples, cfg.DemoError)
	train, heldout, demos := data.Train, data.Heldout, data.TrainDemos

	t0 := time.Now()
	sftSink := checkpoint.Dir(filepath.Join(dir, "sft"))
	var err error
	rep.SFT, err = sft.Train(ctx, sft.Input{Config: cfg.SFT, Model: cfg.Model, Tokenizer: tok,
		Train: demos, Heldout: data.HeldoutDemos}, sftSink, progress("sft"))
	if err != nil {
		return rep, err
	}
	sftCP, _, err := sftSink.Latest(ctx)
	if err != nil {
		return rep, err
	}
	policy, err := stage.LoadModel(sftCP.Files, "")
	if err != nil {
		return rep, err
	}
	policy.SetThreads(cfg.Threads)
	rep.Seconds["sft"] = time.Since(t0).Seconds()

	t0 = time.Now()
	var rmTrain []rewardmodel.Comparison
	for round := range max(1, cfg.LabelRounds) {
		cs, err := collect(policy, tok, train[:min(cfg.RMPrompts, len(train))], cfg.K, cfg.SampleBatch, cfg.Seed+100+uint64(round))
		if err != nil {
			return rep, err
		}
		rmTrain = append(rmTrain, cs...)
	}
	rmHeld, err := collect(policy, tok, heldout[:min(cfg.RMHeldout, len(heldout))], cfg.K, cfg.SampleBatch, cfg.Seed+3)
	if err != nil {
		return rep, err
	}
	rep.Seconds["labels"] = time.Since(t0).Seconds()

	t0 = time.Now()
	rmSink := checkpoint.Dir(filepath.Join(dir, "rm"))
	rep.RM, err = rewardmodel.Train(ctx, rewardmodel.Input{Config: cfg.RM, SFT: sftCP.Files, Tokenizer: tok,
		Train: rmTrain, Heldout: rmHeld, Demonstrations: demos}, rmSink, progress("rm"))
	if err != nil {
		return rep, err
	}
	rmCP, _, err := rmSink.Latest(ctx)
	if err != nil {
		return rep, err
	}
	rep.Seconds["rm"] = time.Since(t0).Seconds()
	if rep.RMGoldAcc, rep.LabelGoldAcc, rep.RMGoldPairs, err = goldAccuracy(rmCP.Files, tok, rmHeld, cfg.Threads); err != nil {
		return rep, err
	}

	t0 = time.Now()
	prompts := make([]string, len(train))
	for i, ex := range train {
		prompts[i] = ex.Prompt
	}
	ppoSink := checkpoint.Dir(filepath.Join(dir, "ppo"))
	rep.PPO, err = ppo.Train(ctx, ppo.Input{Config: cfg.PPO, SFT: sftCP.Files, RM: rmCP.Files, Tokenizer: tok,
		Prompts: prompts, Pretrain: demos}, ppoSink, progress("ppo"))
	if err != nil {
		return rep, err
	}
	ppoCP, _, err := ppoSink.Latest(ctx)
	if err != nil {
		return rep, err
	}
	rep.Seconds["ppo"] = time.Since(t0).Seconds()

	tuned, err := stage.LoadModel(ppoCP.Files, "")
	if err != nil {
		return rep, err
	}
	tuned.SetThreads(cfg.Threads)
	evalPrompts := make([]string, len(heldout))
	for i, ex := range heldout {
		evalPrompts[i] = ex.Prompt
	}
	ev, err := sampling.Evaluate(policy, tuned, tok, tasks.Judge, evalPrompts, cfg.EvalSamples, cfg.PPO.MaxNewTokens, cfg.SampleBatch, cfg.Seed+10, nil)
	rep.WinRate, rep.SFTGold, rep.PPOGold, rep.KL = ev.WinRate, ev.RefGold, ev.Gold, ev.KL
	return rep, err
}

// collect samples K responses per prompt from the policy and has one
// reliable simulated labeler rank them (duplicates are dropped; prompts with
// fewer than two distinct responses give no comparison).
func collect(policy *model.Model, tok tokenizer.Tokenizer, exs []tasks.Example, k, batch int, seed uint64) ([]rewardmodel.Comparison, error) {
	prompts := make([]string, len(exs))
	for i, ex := range exs {
		prompts[i] = ex.Prompt
	}
	var resps [][]string
	err := sampling.Responses(policy, tok, prompts, k, model.SampleConfig{MaxTokens: 14, Temperature: 1}, batch, model.NewRNG(seed),
		func(_ int, rs [][]string) error { resps = append(resps, rs...); return nil })
	if err != nil {
		return nil, err
	}
	panel := tasks.Panel()[:6] // the reliable labelers
	lrng := newRand(seed)
	first := lrng.IntN(len(panel))
	var out []rewardmodel.Comparison
	for i, ex := range exs {
		if len(resps[i]) < 2 {
			continue
		}
		l := panel[(first+i)%len(panel)]
		out = append(out, rewardmodel.Comparison{Prompt: ex.Prompt, Responses: resps[i], Ranks: l.Rank(lrng, ex.Prompt, resps[i]), Labeler: l.Name})
	}
	return out, nil
}

// goldAccuracy is the share of held-out response pairs with different gold
// scores that the reward model (and, for reference, the labels) order as the
// gold judge does.
func goldAccuracy(files map[string][]byte, tok tokenizer.Tokenizer, cs []rewardmodel.Comparison, threads int) (rmAcc, labelAcc float64, pairs int, err error) {
	rm, err := stage.LoadModel(files, "")
	if err != nil {
		return 0, 0, 0, err
	}
	rm.SetThreads(threads)
	right, labelRight := 0, 0
	for _, c := range cs {
		seqs := make([]stage.Seq, len(c.Responses))
		gold := make([]float64, len(c.Responses))
		for i, r := range c.Responses {
			if seqs[i], err = rewardmodel.Sequence(tok, c.Prompt, r); err != nil {
				return 0, 0, 0, err
			}
			gold[i], _ = tasks.Judge(c.Prompt, r)
		}
		scores, err := rewardmodel.Scores(rm, seqs, tok.EOT())
		if err != nil {
			return 0, 0, 0, err
		}
		for i := range gold {
			for j := i + 1; j < len(gold); j++ {
				if gold[i] == gold[j] {
					continue
				}
				pairs++
				if (gold[i] > gold[j]) == (scores[i] > scores[j]) {
					right++
				}
				if (gold[i] > gold[j]) == (c.Ranks[i] < c.Ranks[j]) {
					labelRight++
				}
			}
		}
	}
	if pairs == 0 {
		return 0, 0, 0, nil
	}
	return float64(right) / float64(pairs), float64(labelRight) / float64(pairs), pairs, nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x1abe1)) }
