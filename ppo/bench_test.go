package ppo

import (
	"testing"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tasks"
)

// BenchmarkIteration times PPO iterations of the demo's shape (3 layers,
// width 64, 256 rollouts of up to 14 tokens, 2 epochs of 128-sequence
// minibatches) and reports the split between sampling, scoring (reward,
// reference, value and policy forwards) and the update.
// scripts/bench_ppo.sh adds the share of time outside the engine's kernels.
func BenchmarkIteration(b *testing.B) {
	tok := tasks.Tokenizer()
	cfg := model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 3, Heads: 4, Width: 64}
	files := func(valueHead bool) map[string][]byte {
		c := cfg
		c.ValueHead = valueHead
		m, err := model.New(c, model.NewRNG(1))
		if err != nil {
			b.Fatal(err)
		}
		fs, err := stage.ModelFiles("", m, nil)
		if err != nil {
			b.Fatal(err)
		}
		out := map[string][]byte{}
		for _, f := range fs {
			out[f.Name] = f.Data
		}
		return out
	}
	train, _ := tasks.Split(tasks.Examples(1, 2000))
	var prompts []string
	for _, ex := range train {
		prompts = append(prompts, ex.Prompt)
	}
	in := Input{
		Config: Config{Iterations: 1, RolloutBatch: 256, MaxNewTokens: 14, Epochs: 2, MiniBatch: 128,
			PolicyLR: 6e-4, ValueLR: 1e-3, ClipRange: 0.2, ValueClip: 0.2, Gamma: 1, Lambda: 1, KLCoef: 0.1,
			NormalizeReward: true, ClipNorm: 1, CheckpointEvery: 1, Seed: 1, Threads: 2},
		SFT: files(false), RM: files(true), Tokenizer: tok, Prompts: prompts,
	}
	tr := &trainer{cfg: in.Config, tok: tok}
	if err := tr.encode(in); err != nil {
		b.Fatal(err)
	}
	tr.reference, _ = stage.LoadModel(in.SFT, "")
	tr.reward, _ = stage.LoadModel(in.RM, "")
	var st state
	if err := tr.start(in, &st); err != nil {
		b.Fatal(err)
	}
	for _, m := range []*model.Model{tr.policy, tr.reference, tr.reward, tr.value} {
		m.SetThreads(in.Config.Threads)
	}
	total := map[string]float64{}
	b.ResetTimer()
	for range b.N {
		_, secs, err := tr.iterate(&st)
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range secs {
			total[k] += v
		}
	}
	for k, v := range total {
		b.ReportMetric(v/float64(b.N), k+"/op")
	}
}
