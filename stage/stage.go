// Package stage is the contract the three trainers (sft, rewardmodel, ppo)
// share: where checkpoints go (a Sink; package checkpoint implements it
// over the object store, a local folder or memory), how progress is
// reported, and the checkpoint files every trainer writes. Every trainer starts by
// asking its sink for the latest committed checkpoint and continues from it,
// so a crash costs at most one checkpoint interval.
package stage

import (
	"context"

	"github.com/instructflow/instructflow/errkind"
)

// File is one file of a checkpoint.
type File struct {
	Name string
	Data []byte
}

// Checkpoint is a committed checkpoint read back from a sink.
type Checkpoint struct {
	Step  int64
	Files map[string][]byte
	// ID identifies the checkpoint's content (the SHA-256 of its manifest).
	ID string
}

// Sink stores a stage's checkpoints. Save commits all files or none (a
// checkpoint without its manifest does not exist); Latest returns the newest
// committed checkpoint that verifies (skipping damaged ones), or ok=false
// when there is none.
type Sink interface {
	Save(ctx context.Context, step int64, files []File) (id string, err error)
	Latest(ctx context.Context) (cp Checkpoint, ok bool, err error)
}

// Report is one progress report of a trainer.
type Report struct {
	Step, Total int64
	Metrics     map[string]float64
	// Checkpoint is the id of the checkpoint saved at this step, if any.
	Checkpoint string
}

// Progress receives reports; an error stops the trainer, which returns it
// (after its last committed checkpoint). It later becomes Temporal
// heartbeats and Postgres metrics.
type Progress func(Report) error

// Schedule is the optimiser schedule every supervised trainer (SFT, the
// reward model) takes: steps of BatchSize, warmup then cosine from LR to
// MinLR, AdamW weight decay, gradient clipping, a checkpoint every
// CheckpointEvery steps.
type Schedule struct {
	Steps, BatchSize, Warmup, CheckpointEvery int
	LR, MinLR, ClipNorm, WeightDecay          float32
}

// Validate reports the first setting that cannot work, as ErrBadInput,
// prefixed with the stage's name.
func (s Schedule) Validate(name string) error {
	switch {
	case s.Steps <= 0:
		return errkind.BadInputf("%s: steps is %d; give a positive number", name, s.Steps)
	case s.BatchSize <= 0:
		return errkind.BadInputf("%s: batch_size is %d; give a positive number", name, s.BatchSize)
	case !(s.LR > 0) || s.MinLR < 0 || s.MinLR > s.LR:
		return errkind.BadInputf("%s: lr %g and min_lr %g: need 0 <= min_lr <= lr, lr > 0", name, s.LR, s.MinLR)
	case s.Warmup < 0 || s.ClipNorm < 0 || s.WeightDecay < 0:
		return errkind.BadInputf("%s: warmup, clip_norm and weight_decay must not be negative", name)
	case s.CheckpointEvery <= 0:
		return errkind.BadInputf("%s: checkpoint_every is %d; give a positive number", name, s.CheckpointEvery)
	}
	return nil
}
