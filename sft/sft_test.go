package sft

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/stage/stagetest"
	"github.com/instructflow/instructflow/tasks"
)

func testInput(steps int) Input {
	train, heldout := tasks.Split(tasks.Examples(1, 2000))
	tok := tasks.Tokenizer()
	return Input{
		Config: Config{Steps: steps, BatchSize: 16, LR: 3e-3, MinLR: 3e-4, Warmup: 2, WeightDecay: 0.01,
			ClipNorm: 1, CheckpointEvery: 4, EvalEvery: 4, Seed: 7, Threads: 2},
		Model:     model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 2, Heads: 2, Width: 32},
		Tokenizer: tok,
		Train:     tasks.Demonstrations(1, train, 0.1),
		Heldout:   tasks.Demonstrations(2, heldout[:100], 0),
	}
}

func TestLossFallsOnResponseTokens(t *testing.T) {
	in := testInput(300)
	in.Config.CheckpointEvery = 300
	var first float64
	res, err := Train(context.Background(), in, checkpoint.Dir(t.TempDir()), func(r stage.Report) error {
		if r.Step == 4 && first == 0 {
			first = r.Metrics["heldout_loss"]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !(res.HeldoutLoss < first*0.8) {
		t.Fatalf("held-out loss %v after 300 steps, %v after 4: not learning", res.HeldoutLoss, first)
	}
	if res.Tokens == 0 || res.Step != 300 {
		t.Fatalf("result %+v", res)
	}
}

// TestResumeIsBitIdentical: 12 steps straight and 12 steps stopped after the
// checkpoint at 8 and restarted give byte-identical final checkpoints.
func TestResumeIsBitIdentical(t *testing.T) {
	stagetest.ResumeIsBitIdentical(t, 12, 8, func(sink stage.Sink, p stage.Progress) error {
		_, err := Train(context.Background(), testInput(12), sink, p)
		return err
	})
}

func TestBadInput(t *testing.T) {
	for name, edit := range map[string]func(*Input){
		"zero steps":     func(in *Input) { in.Config.Steps = 0 },
		"negative lr":    func(in *Input) { in.Config.LR = -1 },
		"no data":        func(in *Input) { in.Train = nil },
		"bad character":  func(in *Input) { in.Train[0].Response = "ü" },
		"too long":       func(in *Input) { in.Train[0].Response = string(bytes.Repeat([]byte("a"), 40)) },
		"vocab mismatch": func(in *Input) { in.Model.Vocab = 10 },
	} {
		t.Run(name, func(t *testing.T) {
			in := testInput(2)
			edit(&in)
			_, err := Train(context.Background(), in, checkpoint.Dir(t.TempDir()), nil)
			if !errors.Is(err, errkind.BadInput) {
				t.Fatalf("got %v, want a bad-input error", err)
			}
		})
	}
}
