package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.temporal.io/sdk/activity"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
)

// stageSink is a stage's checkpoint store as its trainer's stage.Sink.
// Every checkpoint it resumes from must match the manifest hash recorded in
// Postgres when it was committed (one that does not is skipped, like a
// damaged one), and it remembers the step the trainer resumed from.
type stageSink struct {
	checkpoint.Store

	mu      sync.Mutex
	asked   bool
	resumed int64
}

// recorded is where committed checkpoints' manifest hashes are looked up.
type recorded interface {
	CheckpointHashes(ctx context.Context, run, stage string, step int64) ([]string, error)
}

// stageSink returns the checkpoint store of a run's stage.
func (a *Activities) stageSink(ctx context.Context, run string, name runstate.Stage) (*stageSink, error) {
	log := activity.GetLogger(ctx)
	return newStageSink(a.Objects, a.DB, run, name, func(msg string) { log.Warn(msg, "run", run, "stage", name) })
}

func newStageSink(blobs checkpoint.Blobs, db recorded, run string, name runstate.Stage, log func(string)) (*stageSink, error) {
	prefix, err := checkpoint.StagePrefix(run, string(name))
	if err != nil {
		return nil, err
	}
	return &stageSink{Store: checkpoint.Store{
		Blobs:  blobs,
		Prefix: prefix,
		Verify: func(ctx context.Context, step int64, sha string) error {
			hashes, err := db.CheckpointHashes(ctx, run, string(name), step)
			switch {
			case err != nil:
				return fmt.Errorf("look up the recorded manifest: %w", err)
			case len(hashes) == 0:
				// Committed, but not recorded yet: records are written off the
				// training goroutine, so the newest checkpoint of a worker that
				// died may have none. Its own manifest verified it.
				return nil
			case !slices.Contains(hashes, sha):
				return fmt.Errorf("manifest SHA-256 %.12s, but %.12s was recorded when it was committed: %w", sha, hashes[len(hashes)-1], errkind.Corrupt)
			}
			return nil
		},
		Log: log,
	}}, nil
}

// Latest implements stage.Sink.
func (s *stageSink) Latest(ctx context.Context) (stage.Checkpoint, bool, error) {
	cp, ok, err := s.Store.Latest(ctx)
	s.mu.Lock()
	if !s.asked && err == nil {
		s.asked, s.resumed = true, cp.Step // the trainer's first question: where it starts
	}
	s.mu.Unlock()
	return cp, ok, err
}

// resumedFrom is the step of the checkpoint the trainer started from (0
// when it started afresh).
func (s *stageSink) resumedFrom() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed
}

// load reads a checkpoint named in a payload and checks that it is the one
// its stage committed (the manifest's hash); a changed or corrupt checkpoint
// is not retried.
func (a *Activities) load(ctx context.Context, cp *Checkpoint) (map[string][]byte, error) {
	if cp == nil {
		return nil, errkind.BadInputf("no checkpoint given: an earlier stage did not produce one")
	}
	prefix, err := checkpoint.StagePrefix(cp.Run, string(cp.Stage))
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint %s: %w", errkind.BadInput, cp.Key(), err)
	}
	got, err := checkpoint.Store{Blobs: a.Objects, Prefix: prefix}.Load(ctx, cp.Step)
	if errors.Is(err, errkind.Corrupt) || errors.Is(err, errkind.NotFound) {
		return nil, fmt.Errorf("%w: checkpoint %s: %w; rerun its stage in a new run", errkind.BadInput, cp.Key(), err)
	}
	if err != nil {
		return nil, err
	}
	if got.ID != cp.SHA256 {
		return nil, errkind.BadInputf("checkpoint %s has manifest %s, not %s as its stage committed; rerun its stage in a new run", cp.Key(), got.ID, cp.SHA256)
	}
	return got.Files, nil
}
