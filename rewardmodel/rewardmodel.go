// Package rewardmodel is the reward-model stage of InstructGPT: a model
// initialised from the SFT checkpoint, its LM head replaced by a scalar head
// read at the end of the response, trained on rankings of K responses per prompt. All
// K-choose-2 pairs of a prompt form one batch element, so each response goes
// through the model once; the loss is -mean log sigmoid(r_win - r_lose -
// margin) over the pairs whose ranks differ (ties give no pair). After
// training, scores are shifted so that the SFT demonstrations average 0.
package rewardmodel

import (
	"context"
	"fmt"
	"math"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Config holds the reward model's hyperparameters.
type Config struct {
	Steps           int     `json:"steps"`
	BatchSize       int     `json:"batch_size"` // comparisons (prompts) per step
	LR              float32 `json:"lr"`
	MinLR           float32 `json:"min_lr"`
	Warmup          int     `json:"warmup"`
	WeightDecay     float32 `json:"weight_decay"`
	ClipNorm        float32 `json:"clip_norm"`
	Margin          float32 `json:"margin"` // required score gap between a better and a worse response
	CheckpointEvery int     `json:"checkpoint_every"`
	EvalEvery       int     `json:"eval_every"`
	Seed            uint64  `json:"seed"`
	Threads         int     `json:"threads"`
}

// Validate reports a hyperparameter that cannot work.
func (c Config) Validate() error {
	if c.Margin < 0 {
		return errkind.BadInputf("rewardmodel: margin is %g; it must not be negative", c.Margin)
	}
	return stage.Schedule{Steps: c.Steps, BatchSize: c.BatchSize, Warmup: c.Warmup, CheckpointEvery: c.CheckpointEvery,
		LR: c.LR, MinLR: c.MinLR, ClipNorm: c.ClipNorm, WeightDecay: c.WeightDecay}.Validate("rewardmodel")
}

// Comparison is one labeler's ranking of K responses to a prompt (ranks:
// 1 = best, equal ranks tie).
type Comparison struct {
	Prompt    string
	Responses []string
	Ranks     []int
	Labeler   string
}

// Input is everything a run of the stage needs.
type Input struct {
	Config Config
	// SFT is the SFT checkpoint's files; its trunk initialises the model.
	SFT       map[string][]byte
	Tokenizer tokenizer.Tokenizer
	Train     []Comparison
	Heldout   []Comparison
	// TrainSet and HeldoutSet, when set, are used instead of Train and
	// Heldout: the same comparisons, added to datasets on disk as they are
	// read (NewDataset), for more of them than memory should hold. The
	// caller closes them.
	TrainSet, HeldoutSet *Dataset
	// Demonstrations set the score's zero: after training their mean is 0.
	Demonstrations []stage.Example
}

// Metrics are the reward model's evaluation on held-out comparisons.
type Metrics struct {
	Accuracy   float64            `json:"accuracy"` // share of held-out pairs ranked as labeled
	Pairs      int                `json:"pairs"`
	ByLabeler  map[string]float64 `json:"accuracy_by_labeler"`
	Loss       float64            `json:"loss"`
	LengthCorr float64            `json:"length_correlation"` // Pearson, score vs response length
	// Calibration: for predicted P(first wins) in ten buckets, the
	// observed share of pairs the first (by score) won, and the count.
	Calibration []Bucket `json:"calibration"`
}

// Bucket is one calibration bucket.
type Bucket struct {
	Predicted float64 `json:"predicted"`
	Observed  float64 `json:"observed"`
	Count     int     `json:"count"`
}

// Result is what the stage produced.
type Result struct {
	Step       int64   `json:"step"`
	TrainLoss  float64 `json:"train_loss"`
	Heldout    Metrics `json:"heldout"`
	Offset     float64 `json:"offset"` // subtracted so the demonstrations average 0
	Checkpoint string  `json:"checkpoint"`
}

type state struct {
	Stage     string       `json:"stage"`
	Step      int64        `json:"step"`
	Cursor    stage.Cursor `json:"cursor"`
	TrainLoss float64      `json:"train_loss"`
	Heldout   Metrics      `json:"heldout"`
	Offset    float64      `json:"offset"`
}

// encoded is a comparison as token sequences.
type encoded struct {
	seqs    []stage.Seq
	ranks   []int
	labeler string
}

// Train runs the stage, continuing from the sink's latest checkpoint.
func Train(ctx context.Context, in Input, sink stage.Sink, progress stage.Progress) (Result, error) {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	sftModel, err := stage.LoadModel(in.SFT, "")
	if err != nil {
		return Result{}, errkind.BadInputf("rewardmodel: SFT checkpoint: %v", err)
	}
	if sftModel.Config.ValueHead {
		return Result{}, errkind.BadInputf("rewardmodel: the SFT checkpoint has a value head: it is a reward or value model, not an SFT policy")
	}
	ctxLen := sftModel.Config.Context
	train, heldout := in.TrainSet, in.HeldoutSet
	if train == nil {
		if train, err = datasetOf(in.Tokenizer, in.Train); err != nil {
			return Result{}, err
		}
		defer train.Close()
	}
	if heldout == nil {
		if heldout, err = datasetOf(in.Tokenizer, in.Heldout); err != nil {
			return Result{}, err
		}
		defer heldout.Close()
	}
	in.Train, in.Heldout = nil, nil // held on disk from here on
	if err := train.fits(ctxLen); err != nil {
		return Result{}, err
	}
	if err := heldout.fits(ctxLen); err != nil {
		return Result{}, err
	}
	skippedTrain, skippedHeld := train.Skipped, heldout.Skipped
	if train.Len() == 0 {
		return Result{}, errkind.BadInputf("rewardmodel: no training comparisons with at least one decided pair")
	}
	st := state{Stage: "rm"}
	m, opt, cp, err := stage.Begin(ctx, sink, "rm", sftModel.Config, func() (*model.Model, error) { return fromSFT(sftModel, cfg.Seed) },
		func(m *model.Model) *model.AdamW { return newOptimizer(m, cfg) }, &st)
	if err != nil {
		return Result{}, err
	}
	if cfg.Threads > 0 {
		m.SetThreads(cfg.Threads)
	}
	res := Result{Step: st.Step, TrainLoss: st.TrainLoss, Heldout: st.Heldout, Offset: st.Offset, Checkpoint: cp.ID}
	pad := in.Tokenizer.EOT()
	for st.Step < int64(cfg.Steps) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		batch, err := train.get(st.Cursor.Next(cfg.Seed, train.Len(), cfg.BatchSize))
		if err != nil {
			return res, err
		}
		m.ZeroGrad()
		loss, _, err := pairLoss(m, batch, pad, cfg.Margin, true)
		if err != nil {
			return res, fmt.Errorf("rewardmodel: step %d: %w", st.Step+1, err)
		}
		if cfg.ClipNorm > 0 {
			m.ClipGradNorm(cfg.ClipNorm)
		}
		opt.Update(model.CosineLR(int(st.Step), cfg.Warmup, cfg.Steps, cfg.LR, cfg.MinLR))
		st.Step++
		st.TrainLoss = loss
		metrics := map[string]float64{"loss": loss,
			"skipped_comparisons": float64(skippedTrain), "skipped_heldout_comparisons": float64(skippedHeld)}
		last := st.Step == int64(cfg.Steps)
		if heldout.Len() > 0 && (last || (cfg.EvalEvery > 0 && st.Step%int64(cfg.EvalEvery) == 0)) {
			if st.Heldout, err = evaluate(m, heldout, pad); err != nil {
				return res, err
			}
			metrics["heldout_accuracy"], metrics["heldout_loss"] = st.Heldout.Accuracy, st.Heldout.Loss
		}
		rep := stage.Report{Step: st.Step, Total: int64(cfg.Steps), Metrics: metrics}
		if last {
			// The score's zero: the demonstrations' mean, folded into the head's bias.
			if st.Offset, err = normalise(m, in.Tokenizer, in.Demonstrations); err != nil {
				return res, err
			}
			metrics["offset"] = st.Offset
		}
		if last || st.Step%int64(cfg.CheckpointEvery) == 0 {
			if rep.Checkpoint, err = save(ctx, sink, m, opt, st); err != nil {
				return res, err
			}
			res.Checkpoint = rep.Checkpoint
		}
		res.Step, res.TrainLoss, res.Heldout, res.Offset = st.Step, st.TrainLoss, st.Heldout, st.Offset
		if progress != nil {
			if err := progress(rep); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// FromSFT builds a reward model from an SFT checkpoint: the same trunk, a
// scalar head with small random weights and zero bias. (The LM head is tied
// to the token embedding and simply not used.)
func FromSFT(files map[string][]byte, seed uint64) (*model.Model, error) {
	sftModel, err := stage.LoadModel(files, "")
	if err != nil {
		return nil, errkind.BadInputf("rewardmodel: SFT checkpoint: %v", err)
	}
	return fromSFT(sftModel, seed)
}

func fromSFT(sftModel *model.Model, seed uint64) (*model.Model, error) {
	cfg := sftModel.Config
	cfg.ValueHead = true
	m, err := model.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	copy(m.Params, sftModel.Params) // Base tensors come first, in the same order
	w := m.Tensor("v_head.summary.weight")
	rng := model.NewRNG(seed)
	std := float32(1 / math.Sqrt(float64(cfg.Width+1)))
	for i := range w.Data {
		w.Data[i] = std * rng.Norm()
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
		return "", fmt.Errorf("rewardmodel: %w", err)
	}
	return id, nil
}

// Sequence tokenises prompt + response + end-of-text; the reward is read at
// the last token before the end-of-text (see readAt).
func Sequence(tok tokenizer.Tokenizer, prompt, response string) (stage.Seq, error) {
	p, err := tok.Encode(prompt)
	if err != nil {
		return stage.Seq{}, err
	}
	r, err := tok.Encode(response)
	if err != nil {
		return stage.Seq{}, err
	}
	return stage.Seq{Tokens: append(append(p, r...), tok.EOT()), PromptLen: len(p)}, nil
}

// ScoreExamples scores prompt/response pairs, batch pairs per Scores call.
// A pair the tokenizer cannot encode is bad input.
func ScoreExamples(m *model.Model, tok tokenizer.Tokenizer, exs []stage.Example, batch int) ([]float32, error) {
	scores := make([]float32, 0, len(exs))
	for i := 0; i < len(exs); i += batch {
		part := exs[i:min(len(exs), i+batch)]
		seqs := make([]stage.Seq, len(part))
		for j, ex := range part {
			var err error
			if seqs[j], err = Sequence(tok, ex.Prompt, ex.Response); err != nil {
				return nil, errkind.BadInputf("rewardmodel: pair %d: %v", i+j, err)
			}
		}
		got, err := Scores(m, seqs, tok.EOT())
		if err != nil {
			return nil, err
		}
		scores = append(scores, got...)
	}
	return scores, nil
}

// Scores runs m on seqs and returns the value at each one's last token.
func Scores(m *model.Model, seqs []stage.Seq, pad int32) ([]float32, error) {
	B, T := len(seqs), 0
	for _, s := range seqs {
		T = max(T, len(s.Tokens))
	}
	if T > m.Config.Context {
		return nil, errkind.BadInputf("rewardmodel: a sequence has %d tokens, more than the context %d", T, m.Config.Context)
	}
	tokens := make([]int32, B*T)
	for b, s := range seqs {
		for t := range T {
			tokens[b*T+t] = pad
			if t < len(s.Tokens) {
				tokens[b*T+t] = s.Tokens[t]
			}
		}
	}
	out, err := m.Forward(model.Batch{B: B, T: T, Tokens: tokens})
	if err != nil {
		return nil, err
	}
	scores := make([]float32, B)
	for b, s := range seqs {
		scores[b] = out.Values[b*T+readAt(s, pad)]
	}
	return scores, nil
}

// readAt is where a sequence's reward is read: its last token before the
// end-of-text. That position is where the SFT model decided to stop, so its
// state already says whether the response is complete and right; the
// end-of-text token itself is never an input during SFT.
func readAt(s stage.Seq, eot int32) int {
	last := len(s.Tokens) - 1
	if last > 0 && s.Tokens[last] == eot {
		last--
	}
	return last
}

// pairLoss computes the K-wise loss of a batch of comparisons: each
// comparison's responses go through the model once, its loss is the mean
// over its decided pairs, and the batch loss is the mean over comparisons.
// With backward it also accumulates the gradients.
func pairLoss(m *model.Model, batch []encoded, pad int32, margin float32, backward bool) (float64, []float32, error) {
	var seqs []stage.Seq
	for _, e := range batch {
		seqs = append(seqs, e.seqs...)
	}
	B, T := len(seqs), 0
	for _, s := range seqs {
		T = max(T, len(s.Tokens))
	}
	scores, err := Scores(m, seqs, pad)
	if err != nil {
		return 0, nil, err
	}
	dscore := make([]float64, B)
	var total float64
	off := 0
	for _, e := range batch {
		k := len(e.seqs)
		var pairs int
		for i := range k {
			for j := range k {
				if e.ranks[i] < e.ranks[j] {
					pairs++
				}
			}
		}
		var loss float64
		for i := range k {
			for j := range k {
				if e.ranks[i] >= e.ranks[j] {
					continue
				}
				d := float64(scores[off+i]-scores[off+j]) - float64(margin)
				loss += softplus(-d) // -log sigmoid(d)
				g := -sigmoid(-d) / float64(pairs) / float64(len(batch))
				dscore[off+i] += g
				dscore[off+j] -= g
			}
		}
		total += loss / float64(pairs)
		off += k
	}
	if backward {
		dv := make([]float32, B*T)
		for b, s := range seqs {
			dv[b*T+readAt(s, pad)] = float32(dscore[b])
		}
		m.Backward(model.Grad{Values: dv})
	}
	return total / float64(len(batch)), scores, nil
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// softplus is log(1 + e^x), computed without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// evaluate scores held-out comparisons: pair accuracy (overall and per
// labeler), loss, calibration and the correlation of score with length.
func evaluate(m *model.Model, heldout *Dataset, pad int32) (Metrics, error) {
	met := Metrics{ByLabeler: map[string]float64{}}
	perLabeler := map[string][2]int{}
	buckets := make([]struct {
		pred, obs float64
		n         int
	}, 10)
	var lossSum float64
	var xs, ys []float64
	for i := 0; i < heldout.Len(); i += 16 {
		batch, err := heldout.span(i, min(heldout.Len(), i+16))
		if err != nil {
			return met, fmt.Errorf("rewardmodel: evaluate: %w", err)
		}
		loss, scores, err := pairLoss(m, batch, pad, 0, false)
		if err != nil {
			return met, fmt.Errorf("rewardmodel: evaluate: %w", err)
		}
		lossSum += loss * float64(len(batch))
		off := 0
		for _, e := range batch {
			for a := range e.seqs {
				xs = append(xs, float64(scores[off+a]))
				ys = append(ys, float64(len(e.seqs[a].Tokens)-e.seqs[a].PromptLen))
				for b := range e.seqs {
					if e.ranks[a] >= e.ranks[b] {
						continue
					}
					right := scores[off+a] > scores[off+b]
					pl := perLabeler[e.labeler]
					pl[1]++
					if right {
						pl[0]++
						met.Accuracy++
					}
					perLabeler[e.labeler] = pl
					met.Pairs++
					// Calibration over the pair ordered by score.
					p := sigmoid(math.Abs(float64(scores[off+a] - scores[off+b])))
					bk := min(9, int(p*10))
					buckets[bk].pred += p
					buckets[bk].n++
					if right {
						buckets[bk].obs++
					}
				}
			}
			off += len(e.seqs)
		}
	}
	if met.Pairs > 0 {
		met.Accuracy /= float64(met.Pairs)
	}
	met.Loss = lossSum / float64(heldout.Len())
	for l, v := range perLabeler {
		met.ByLabeler[l] = float64(v[0]) / float64(v[1])
	}
	for _, b := range buckets {
		if b.n > 0 {
			met.Calibration = append(met.Calibration, Bucket{Predicted: b.pred / float64(b.n), Observed: b.obs / float64(b.n), Count: b.n})
		}
	}
	met.LengthCorr = pearson(xs, ys)
	return met, nil
}

func pearson(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
		syy += (ys[i] - my) * (ys[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

// normalise shifts the head's bias so the demonstrations score 0 on
// average, and returns the shift.
func normalise(m *model.Model, tok tokenizer.Tokenizer, demos []stage.Example) (float64, error) {
	if len(demos) == 0 {
		return 0, nil
	}
	scores, err := ScoreExamples(m, tok, demos, 64)
	if err != nil {
		return 0, fmt.Errorf("demonstrations: %w", err)
	}
	var sum float64
	for _, s := range scores {
		sum += float64(s)
	}
	mean := sum / float64(len(demos))
	m.Tensor("v_head.summary.bias").Data[0] -= float32(mean)
	return mean, nil
}
