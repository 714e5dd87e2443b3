package rewardmodel

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/stage/stagetest"
	"github.com/instructflow/instructflow/tasks"
)

// sftFiles trains a tiny SFT model for a few steps and returns its
// checkpoint files.
func sftFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files, _ := sftRun(t)
	return files
}

func sftRun(t *testing.T) (map[string][]byte, checkpoint.Store) {
	t.Helper()
	train, _ := tasks.Split(tasks.Examples(1, 300))
	tok := tasks.Tokenizer()
	dir := checkpoint.Dir(t.TempDir())
	_, err := sft.Train(context.Background(), sft.Input{
		Config:    sft.Config{Steps: 10, BatchSize: 8, LR: 3e-3, CheckpointEvery: 10, Seed: 1},
		Model:     model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 2, Heads: 2, Width: 32},
		Tokenizer: tok, Train: tasks.Demonstrations(1, train, 0),
	}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := dir.Latest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Files, dir
}

func comparisons(seed uint64, n int) []Comparison {
	var out []Comparison
	for _, r := range tasks.Simulate(seed, tasks.Examples(seed, n), tasks.Panel()[:6], 4, 1) {
		out = append(out, Comparison{Prompt: r.Prompt, Responses: r.Responses, Ranks: r.Ranks, Labeler: r.Labeler})
	}
	return out
}

func testInput(t *testing.T, steps int) Input {
	return Input{
		Config: Config{Steps: steps, BatchSize: 8, LR: 1e-3, MinLR: 1e-4, Warmup: 2, ClipNorm: 1,
			CheckpointEvery: 4, EvalEvery: 4, Seed: 3, Threads: 2},
		SFT: sftFiles(t), Tokenizer: tasks.Tokenizer(),
		Train: comparisons(1, 120), Heldout: comparisons(2, 40),
		Demonstrations: tasks.Demonstrations(1, tasks.Examples(1, 50), 0),
	}
}

// TestPairLossIsKWise checks the loss of one comparison against the
// formula: the mean over all decided pairs of -log sigmoid(r_i - r_j), ties
// giving no pair, with each response scored once.
func TestPairLossIsKWise(t *testing.T) {
	m, err := FromSFT(sftFiles(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	tok := tasks.Tokenizer()
	c := Comparison{Prompt: "reverse abc=", Responses: []string{"cba", "abc", "cb", "bca"}, Ranks: []int{1, 3, 2, 2}, Labeler: "x"}
	d, err := datasetOf(tok, []Comparison{c})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	enc, err := d.get([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	loss, scores, err := pairLoss(m, enc, tok.EOT(), 0, false)
	if err != nil {
		t.Fatal(err)
	}
	// decided pairs (better, worse): (0,1) (0,2) (0,3) (2,1) (3,1); (2,3) tie
	want := 0.0
	for _, p := range [][2]int{{0, 1}, {0, 2}, {0, 3}, {2, 1}, {3, 1}} {
		want += softplus(-float64(scores[p[0]] - scores[p[1]]))
	}
	want /= 5
	if math.Abs(loss-want) > 1e-6 {
		t.Fatalf("loss %v, want %v", loss, want)
	}
	// The gradient matches a finite difference on the head's bias... which
	// cancels in every pair, so use a weight instead.
	w := m.Tensor("v_head.summary.weight")
	m.ZeroGrad()
	if _, _, err := pairLoss(m, enc, tok.EOT(), 0, true); err != nil {
		t.Fatal(err)
	}
	g := float64(w.Grad[0])
	const h = 1e-2
	w.Data[0] += h
	lp, _, _ := pairLoss(m, enc, tok.EOT(), 0, false)
	w.Data[0] -= 2 * h
	lm, _, _ := pairLoss(m, enc, tok.EOT(), 0, false)
	w.Data[0] += h
	if fd := (lp - lm) / (2 * h); math.Abs(fd-g) > 1e-3*math.Max(1, math.Abs(fd)) {
		t.Fatalf("gradient %v, finite difference %v", g, fd)
	}
}

func TestTrainLearnsAndNormalises(t *testing.T) {
	in := testInput(t, 40)
	dir := checkpoint.Dir(t.TempDir())
	res, err := Train(context.Background(), in, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Heldout.Pairs == 0 || res.Heldout.Accuracy <= 0.5 {
		t.Fatalf("held-out accuracy %v on %d pairs", res.Heldout.Accuracy, res.Heldout.Pairs)
	}
	if len(res.Heldout.ByLabeler) == 0 || len(res.Heldout.Calibration) == 0 {
		t.Fatalf("metrics incomplete: %+v", res.Heldout)
	}
	// After normalisation the demonstrations average 0.
	cp, _, err := dir.Latest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, err := stage.LoadModel(cp.Files, "")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []stage.Seq
	for _, d := range in.Demonstrations {
		s, _ := Sequence(in.Tokenizer, d.Prompt, d.Response)
		seqs = append(seqs, s)
	}
	scores, err := Scores(m, seqs, in.Tokenizer.EOT())
	if err != nil {
		t.Fatal(err)
	}
	var mean float64
	for _, s := range scores {
		mean += float64(s) / float64(len(scores))
	}
	if math.Abs(mean) > 1e-4 || res.Offset == 0 {
		t.Errorf("demonstrations average %v after normalising by %v", mean, res.Offset)
	}
}

func TestResumeIsBitIdentical(t *testing.T) {
	in := testInput(t, 12)
	stagetest.ResumeIsBitIdentical(t, 12, 8, func(sink stage.Sink, p stage.Progress) error {
		_, err := Train(context.Background(), in, sink, p)
		return err
	})
}

func TestBadInput(t *testing.T) {
	for name, edit := range map[string]func(*Input){
		"zero steps":   func(in *Input) { in.Config.Steps = 0 },
		"no data":      func(in *Input) { in.Train = nil },
		"one response": func(in *Input) { in.Train[0].Responses = in.Train[0].Responses[:1] },
		"bad sft":      func(in *Input) { in.SFT = map[string][]byte{} },
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

func TestSkipsDegenerateComparisons(t *testing.T) {
	in := testInput(t, 2)
	in.Train = append(in.Train,
		Comparison{Prompt: "upper a=", Responses: []string{"A", "a"}, Ranks: []int{1, 1}, Labeler: "x"}, // all tied
		Comparison{Prompt: "upper a=", Responses: []string{"A", "A"}, Ranks: []int{1, 2}, Labeler: "x"}, // identical
	)
	var skipped float64
	_, err := Train(context.Background(), in, checkpoint.Dir(t.TempDir()), func(r stage.Report) error {
		skipped = r.Metrics["skipped_comparisons"]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if skipped < 2 {
		t.Fatalf("skipped_comparisons = %v, want the 2 degenerate ones counted", skipped)
	}
}

func TestRefusesAnotherStagesCheckpoint(t *testing.T) {
	in := testInput(t, 2)
	files, dir := sftRun(t)
	in.SFT = files
	// The sink already holds the SFT stage's checkpoint.
	if _, err := Train(context.Background(), in, dir, nil); !errors.Is(err, errkind.BadInput) || !strings.Contains(err.Error(), "stage") {
		t.Fatalf("got %v, want a refusal naming the other stage", err)
	}
}
