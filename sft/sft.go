// Package sft is the supervised fine-tuning stage: next-token cross-entropy
// on labeler demonstrations, counted on the response tokens only (the prompt
// is context, not a target), with a held-out loss and a budget of steps or
// tokens. It resumes from its latest checkpoint to the bit.
package sft

import (
	"context"
	"fmt"
	"math"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Config holds SFT's hyperparameters.
type Config struct {
	Steps       int     `json:"steps"`        // optimizer steps at most
	TokenBudget int64   `json:"token_budget"` // response tokens trained on at most; 0 = no budget
	BatchSize   int     `json:"batch_size"`
	LR          float32 `json:"lr"`
	MinLR       float32 `json:"min_lr"`
	Warmup      int     `json:"warmup"`
	WeightDecay float32 `json:"weight_decay"`
	ClipNorm    float32 `json:"clip_norm"`
	// CheckpointEvery saves every N steps (and always at the end).
	CheckpointEvery int    `json:"checkpoint_every"`
	EvalEvery       int    `json:"eval_every"`
	Seed            uint64 `json:"seed"`
	Threads         int    `json:"threads"`
}

// Validate reports a hyperparameter that cannot work, as errkind.BadInput.
func (c Config) Validate() error {
	return stage.Schedule{Steps: c.Steps, BatchSize: c.BatchSize, Warmup: c.Warmup, CheckpointEvery: c.CheckpointEvery,
		LR: c.LR, MinLR: c.MinLR, ClipNorm: c.ClipNorm, WeightDecay: c.WeightDecay}.Validate("sft")
}

// Input is everything a run of the stage needs.
type Input struct {
	Config Config
	// Model is the shape of a fresh model; ignored when Base is given.
	Model model.Config
	// Base is a checkpoint's files to start from (nil: a fresh model).
	Base      map[string][]byte
	Tokenizer tokenizer.Tokenizer
	Train     []stage.Example
	Heldout   []stage.Example
}

// Result is what the stage produced.
type Result struct {
	Step        int64   `json:"step"`
	Tokens      int64   `json:"tokens"`
	TrainLoss   float64 `json:"train_loss"`
	HeldoutLoss float64 `json:"heldout_loss"`
	Checkpoint  string  `json:"checkpoint"`
}

// state is state.json: everything besides weights and optimizer moments
// that a resumed run needs to continue exactly.
type state struct {
	Stage       string       `json:"stage"`
	Step        int64        `json:"step"`
	Tokens      int64        `json:"tokens"`
	Cursor      stage.Cursor `json:"cursor"`
	TrainLoss   float64      `json:"train_loss"`
	HeldoutLoss float64      `json:"heldout_loss"`
}

// Train runs SFT, continuing from the sink's latest checkpoint if there is
// one, and saves a checkpoint every CheckpointEvery steps and at the end.
func Train(ctx context.Context, in Input, sink stage.Sink, progress stage.Progress) (Result, error) {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	train, err := Encode(in.Tokenizer, in.Train)
	if err != nil {
		return Result{}, err
	}
	heldout, err := Encode(in.Tokenizer, in.Heldout)
	if err != nil {
		return Result{}, err
	}
	if len(train) == 0 {
		return Result{}, errkind.BadInputf("sft: no training demonstrations")
	}

	want, err := shape(in)
	if err != nil {
		return Result{}, err
	}
	st := state{Stage: "sft"}
	m, opt, cp, err := stage.Begin(ctx, sink, "sft", want, func() (*model.Model, error) { return initModel(in, want) },
		func(m *model.Model) *model.AdamW { return newOptimizer(m, cfg) }, &st)
	if err != nil {
		return Result{}, err
	}
	if cfg.Threads > 0 {
		m.SetThreads(cfg.Threads)
	}
	for _, s := range append(append([]stage.Seq{}, train...), heldout...) {
		if len(s.Tokens)-1 > m.Config.Context {
			return Result{}, errkind.BadInputf("sft: a demonstration has %d tokens, more than the model's context %d; shorten it or enlarge n_positions", len(s.Tokens), m.Config.Context)
		}
	}

	res := Result{Step: st.Step, Tokens: st.Tokens, TrainLoss: st.TrainLoss, HeldoutLoss: st.HeldoutLoss, Checkpoint: cp.ID}
	pad := in.Tokenizer.EOT()
	done := func() bool {
		return st.Step >= int64(cfg.Steps) || (cfg.TokenBudget > 0 && st.Tokens >= cfg.TokenBudget)
	}
	for !done() {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		idx := st.Cursor.Next(cfg.Seed, len(train), cfg.BatchSize)
		seqs := make([]stage.Seq, len(idx))
		for i, j := range idx {
			seqs[i] = train[j]
		}
		B, T, tokens, targets, mask := stage.Padded(seqs, pad)
		m.ZeroGrad()
		out, err := m.Forward(model.Batch{B: B, T: T, Tokens: tokens, Targets: targets})
		if err != nil {
			return res, fmt.Errorf("sft: step %d: %w", st.Step+1, err)
		}
		dlogp := make([]float32, B*T)
		loss := model.CrossEntropy(dlogp, out.LogProbs, mask)
		m.Backward(model.Grad{LogProbs: dlogp})
		if cfg.ClipNorm > 0 {
			m.ClipGradNorm(cfg.ClipNorm)
		}
		opt.Update(model.CosineLR(int(st.Step), cfg.Warmup, cfg.Steps, cfg.LR, cfg.MinLR))
		st.Step++
		for _, w := range mask {
			st.Tokens += int64(w)
		}
		st.TrainLoss = float64(loss)
		metrics := map[string]float64{"loss": st.TrainLoss, "tokens": float64(st.Tokens)}
		last := done()
		if len(heldout) > 0 && (last || (cfg.EvalEvery > 0 && st.Step%int64(cfg.EvalEvery) == 0)) {
			if st.HeldoutLoss, err = Loss(m, heldout, pad, cfg.BatchSize); err != nil {
				return res, err
			}
			metrics["heldout_loss"] = st.HeldoutLoss
		}
		rep := stage.Report{Step: st.Step, Total: int64(cfg.Steps), Metrics: metrics}
		if last || st.Step%int64(cfg.CheckpointEvery) == 0 {
			if rep.Checkpoint, err = save(ctx, sink, m, opt, st); err != nil {
				return res, err
			}
			res.Checkpoint = rep.Checkpoint
		}
		res.Step, res.Tokens, res.TrainLoss, res.HeldoutLoss = st.Step, st.Tokens, st.TrainLoss, st.HeldoutLoss
		if progress != nil {
			if err := progress(rep); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// Initial is the model a fresh SFT run starts from: the base checkpoint's
// weights, or fresh ones drawn from the configured seed, with the
// configured LoRA adapters. External trainers get it (package activities),
// so that they start where the built-in one would.
func Initial(in Input) (*model.Model, error) {
	want, err := shape(in)
	if err != nil {
		return nil, err
	}
	return initModel(in, want)
}

// shape is the model shape the stage trains: the base checkpoint's with
// the configured LoRA adapters, or the configured one. Either way its
// vocabulary must be the tokenizer's.
func shape(in Input) (model.Config, error) {
	if in.Base != nil {
		c, err := model.ParseConfig(in.Base["config.json"])
		if err != nil {
			return model.Config{}, errkind.BadInputf("sft: base checkpoint: %v", err)
		}
		if c.Vocab != in.Tokenizer.VocabSize() {
			return model.Config{}, errkind.BadInputf("sft: base model vocab_size %d differs from its tokenizer's %d", c.Vocab, in.Tokenizer.VocabSize())
		}
		c.ValueHead = false
		c.LoRARank, c.LoRAAlpha = in.Model.LoRARank, in.Model.LoRAAlpha
		return c, nil
	}
	if in.Model.Vocab != in.Tokenizer.VocabSize() {
		return model.Config{}, errkind.BadInputf("sft: model vocab_size %d differs from the tokenizer's %d", in.Model.Vocab, in.Tokenizer.VocabSize())
	}
	return in.Model, nil
}

// initModel builds the model SFT starts from: fresh weights of the
// configured shape, or the base checkpoint's (its transformer; fresh LoRA
// adapters on top when configured).
func initModel(in Input, shape model.Config) (*model.Model, error) {
	m, err := model.New(shape, model.NewRNG(in.Config.Seed))
	if err != nil {
		return nil, errkind.BadInputf("sft: %v", err)
	}
	if in.Base != nil {
		if err := m.LoadWeights(in.Base["model.safetensors"], model.Base); err != nil {
			return nil, errkind.BadInputf("sft: base checkpoint: %v", err)
		}
	}
	return m, nil
}

func newOptimizer(m *model.Model, cfg Config) *model.AdamW {
	ac := model.DefaultAdamW
	ac.WeightDecay = cfg.WeightDecay
	return model.NewAdamW(m, ac)
}

func save(ctx context.Context, sink stage.Sink, m *model.Model, opt *model.AdamW, st state) (string, error) {
	id, err := stage.Save(ctx, sink, st.Step, m, opt, st)
	if err != nil {
		return "", fmt.Errorf("sft: %w", err)
	}
	return id, nil
}

// Loss is the mean response-token cross-entropy of m on seqs.
func Loss(m *model.Model, seqs []stage.Seq, pad int32, batch int) (float64, error) {
	var sum, count float64
	for i := 0; i < len(seqs); i += batch {
		B, T, tokens, targets, mask := stage.Padded(seqs[i:min(len(seqs), i+batch)], pad)
		out, err := m.Forward(model.Batch{B: B, T: T, Tokens: tokens, Targets: targets})
		if err != nil {
			return 0, fmt.Errorf("sft: held-out loss: %w", err)
		}
		for j, w := range mask {
			sum -= float64(w) * float64(out.LogProbs[j])
			count += float64(w)
		}
	}
	if count == 0 {
		return math.NaN(), nil
	}
	return sum / count, nil
}

// Encode tokenises examples as prompt + response + end-of-text.
func Encode(tok tokenizer.Tokenizer, exs []stage.Example) ([]stage.Seq, error) {
	out := make([]stage.Seq, len(exs))
	for i, ex := range exs {
		p, err := tok.Encode(ex.Prompt)
		if err != nil {
			return nil, errkind.BadInputf("sft: example %d: prompt: %v", i, err)
		}
		r, err := tok.Encode(ex.Response)
		if err != nil {
			return nil, errkind.BadInputf("sft: example %d: response: %v", i, err)
		}
		if len(p) == 0 {
			return nil, errkind.BadInputf("sft: example %d has an empty prompt", i)
		}
		s := append(append(p, r...), tok.EOT())
		out[i] = stage.Seq{Tokens: s, PromptLen: len(p)}
	}
	return out, nil
}
