package ppo

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/stage/stagetest"
	"github.com/instructflow/instructflow/tasks"
)

// checkpoints trains a tiny SFT model and reward model for the tests.
func checkpoints(t *testing.T) (sftFiles, rmFiles map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	tok := tasks.Tokenizer()
	train, _ := tasks.Split(tasks.Examples(1, 300))
	sd := checkpoint.Dir(t.TempDir())
	if _, err := sft.Train(ctx, sft.Input{
		Config:    sft.Config{Steps: 10, BatchSize: 8, LR: 3e-3, CheckpointEvery: 10, Seed: 1},
		Model:     model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 2, Heads: 2, Width: 32},
		Tokenizer: tok, Train: tasks.Demonstrations(1, train, 0),
	}, sd, nil); err != nil {
		t.Fatal(err)
	}
	scp, _, _ := sd.Latest(ctx)
	var cs []rewardmodel.Comparison
	for _, r := range tasks.Simulate(2, tasks.Examples(2, 60), tasks.Panel()[:6], 3, 1) {
		cs = append(cs, rewardmodel.Comparison{Prompt: r.Prompt, Responses: r.Responses, Ranks: r.Ranks, Labeler: r.Labeler})
	}
	rd := checkpoint.Dir(t.TempDir())
	if _, err := rewardmodel.Train(ctx, rewardmodel.Input{
		Config: rewardmodel.Config{Steps: 6, BatchSize: 8, LR: 1e-3, CheckpointEvery: 6, Seed: 1},
		SFT:    scp.Files, Tokenizer: tok, Train: cs,
	}, rd, nil); err != nil {
		t.Fatal(err)
	}
	rcp, _, _ := rd.Latest(ctx)
	return scp.Files, rcp.Files
}

func testInput(t *testing.T, iterations int) Input {
	s, r := checkpoints(t)
	train, _ := tasks.Split(tasks.Examples(3, 200))
	var prompts []string
	for _, ex := range train {
		prompts = append(prompts, ex.Prompt)
	}
	return Input{
		Config: Config{Iterations: iterations, RolloutBatch: 16, MaxNewTokens: 10, Epochs: 2, MiniBatch: 8,
			PolicyLR: 1e-3, ValueLR: 1e-3, ClipRange: 0.2, ValueClip: 0.2, EntropyCoef: 0.01,
			Gamma: 1, Lambda: 0.95, KLCoef: 0.05, AdaptiveKL: true, TargetKL: 2, KLHorizon: 1000,
			NormalizeReward: true, PtxCoef: 0.1, PtxBatch: 4, ClipNorm: 1, CheckpointEvery: 2, Seed: 5, Threads: 2},
		SFT: s, RM: r, Tokenizer: tasks.Tokenizer(), Prompts: prompts,
		Pretrain: tasks.Demonstrations(3, train, 0),
	}
}

// TestResumeIsBitIdentical: 6 iterations straight, and 6 with a stop after
// the checkpoint at 4 and a restart, give byte-identical final checkpoints
// (policy, value model, both optimizers, RNG, KL controller, reward
// statistics, data cursors).
func TestResumeIsBitIdentical(t *testing.T) {
	in := testInput(t, 6)
	stagetest.ResumeIsBitIdentical(t, 6, 4, func(sink stage.Sink, p stage.Progress) error {
		_, err := Train(context.Background(), in, sink, p)
		return err
	})
}

func TestLogsEveryMetric(t *testing.T) {
	res, err := Train(context.Background(), testInput(t, 1), checkpoint.Dir(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"score_mean", "kl", "beta", "clip_fraction", "approx_kl", "value_loss", "entropy", "response_length", "ptx_loss"} {
		if _, ok := res.Metrics[k]; !ok {
			t.Errorf("metric %s not logged", k)
		}
	}
}

func TestGAE(t *testing.T) {
	tr := &trainer{cfg: Config{Gamma: 1, Lambda: 0.5}}
	r := &rollout{n: 2, rewards: []float32{0, 1}, values: []float32{0.5, 0.25}}
	r2 := &rollout{n: 1, rewards: []float32{-1}, values: []float32{0}}
	tr.advantages([]*rollout{r, r2})
	// delta1 = 1 - 0.25 = 0.75; A1 = 0.75; delta0 = 0 + 0.25 - 0.5 = -0.25; A0 = -0.25 + 0.5*0.75 = 0.125
	if math.Abs(float64(r.returns[0])-0.625) > 1e-6 || math.Abs(float64(r.returns[1])-1) > 1e-6 || r2.returns[0] != -1 {
		t.Fatalf("returns %v %v", r.returns, r2.returns)
	}
	// whitened: mean 0 over the batch's tokens
	if s := r.adv[0] + r.adv[1] + r2.adv[0]; math.Abs(float64(s)) > 1e-5 {
		t.Fatalf("whitened advantages sum to %v", s)
	}
}

func TestBadInput(t *testing.T) {
	for name, edit := range map[string]func(*Input){
		"negative lr":      func(in *Input) { in.Config.PolicyLR = -1 },
		"gamma above 1":    func(in *Input) { in.Config.Gamma = 2 },
		"adaptive no goal": func(in *Input) { in.Config.TargetKL = 0 },
		"no prompts":       func(in *Input) { in.Prompts = nil },
		"too long":         func(in *Input) { in.Config.MaxNewTokens = 40 },
		"rm without head":  func(in *Input) { in.RM = in.SFT },
	} {
		t.Run(name, func(t *testing.T) {
			in := testInput(t, 2)
			edit(&in)
			if _, err := Train(context.Background(), in, checkpoint.Dir(t.TempDir()), nil); !errors.Is(err, errkind.BadInput) {
				t.Fatalf("got %v, want a bad-input error", err)
			}
		})
	}
}

// TestFiniteNamesTheBadMetric: the guard that stops a diverged update
// before its checkpoint names the first non-finite metric.
func TestFiniteNamesTheBadMetric(t *testing.T) {
	if err := finite(map[string]float64{"kl": 0.1, "loss": 2}); err != nil {
		t.Fatal(err)
	}
	err := finite(map[string]float64{"kl": math.Inf(1), "value_loss": math.NaN(), "loss": 1})
	if err == nil || !strings.Contains(err.Error(), "kl is +Inf") {
		t.Fatalf("got %v, want kl named", err)
	}
}
