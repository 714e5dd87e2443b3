// Package activities holds InstructFlow's Temporal activities: the bridge
// from deterministic workflow code to Postgres, the object store and the
// trainers. Activities are methods on Activities, registered once per worker.
package activities

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/storage/postgres"
)

// database is what the activities need of the Postgres store.
type database interface {
	SchemaVersion(ctx context.Context) (int32, error)
	CreateRun(ctx context.Context, id string, spec []byte) error
	SetRunStatus(ctx context.Context, run, status string, result []byte, errText string) error
	GetStage(ctx context.Context, run, stage string) (postgres.Stage, error)
	BeginStage(ctx context.Context, run, stage, configSHA string) error
	FinishStage(ctx context.Context, run, stage string, result []byte, checkpointKey, checkpointSHA string) error
	EndStage(ctx context.Context, run, stage, status, errText string) error
	RecordMetrics(ctx context.Context, run, stage string, step int64, values map[string]float64) error
	RecordCheckpoint(ctx context.Context, run, stage string, step int64, key, manifestSHA string) error
	CheckpointHashes(ctx context.Context, run, stage string, step int64) ([]string, error)
	Prompts(ctx context.Context, source, split string) ([]string, error)
	Demonstrations(ctx context.Context, source, split string) ([]postgres.Pair, error)
	DatasetPrompts(ctx context.Context, name string, split dataset.Split) ([]postgres.StoredPrompt, error)
	DatasetDemonstrations(ctx context.Context, name string, split dataset.Split) ([]dataset.Example, error)
	CreateBatchFrom(ctx context.Context, name, run string, deadline time.Time, n int, lab postgres.Labeling, fill func(add func([]postgres.BatchItem) error) error) (postgres.Batch, error)
	GetBatch(ctx context.Context, name string) (postgres.Batch, error)
	BatchRanks(ctx context.Context, name string) ([]postgres.ItemRanks, error)
	Snapshot(ctx context.Context, name string) (postgres.Snapshot, error)
	SnapshotWhere(ctx context.Context, name string, f postgres.SnapshotFilter) (postgres.Snapshot, error)
	ExportSnapshot(ctx context.Context, name string, fn func(postgres.ExportRow) error) error
	SetStageSnapshot(ctx context.Context, run, stage, snapshot string) error
	RecordRewardScores(ctx context.Context, snapshot, model string, responseIDs []int64, scores []float64) error
}

// Activities holds the dependencies of every activity.
type Activities struct {
	DB      database
	Objects checkpoint.Blobs
	// Models opens models by reference, for eval.judge.
	Models modelOpener
	// LabelPoll overrides how often label collection looks for new labels
	// (2s).
	LabelPoll time.Duration
	// StallTimeout is how long a stage may report no new step before its
	// attempt fails, retryably, as stalled (0: DefaultStallTimeout). Time
	// spent waiting for labels, or for a compute slot, does not count.
	StallTimeout time.Duration
	// Slots are the worker's compute slots: how many of its stages compute
	// (train, sample, score, evaluate) at once; nil means no limit. A
	// stage waiting for people holds no slot, nor do the short bookkeeping
	// activities, which therefore never queue behind training.
	Slots Slots
	// beatEvery overrides how often a stage heartbeats (1s), and onBeat
	// sees every heartbeat a stage sends (the SDK batches them): for tests.
	beatEvery time.Duration
	onBeat    func(Heartbeat)
	// Metrics, when set, counts stage work for Prometheus.
	Metrics *Metrics
	// Trainers is what stages set to trainer: exec get from this worker.
	Trainers Trainers
}

// DefaultStallTimeout is the stall timeout of Activities whose
// StallTimeout is zero.
const DefaultStallTimeout = 30 * time.Minute

func (a *Activities) stallTimeout() time.Duration {
	if a.StallTimeout > 0 {
		return a.StallTimeout
	}
	return DefaultStallTimeout
}

// Slots limits how many stages compute at once.
type Slots chan struct{}

// NewSlots returns n compute slots.
func NewSlots(n int) Slots { return make(Slots, n) }

// acquire takes a compute slot, waiting while every one is taken; release
// gives it back.
func (a *Activities) acquire(ctx context.Context) error {
	if a.Slots == nil {
		return nil
	}
	select {
	case a.Slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Activities) release() {
	if a.Slots != nil {
		<-a.Slots
	}
}

func (a *Activities) heartbeatEvery() time.Duration {
	if a.beatEvery > 0 {
		return a.beatEvery
	}
	return time.Second
}

// Preflight checks, from a worker, that Postgres answers with the current
// schema and that the object store takes, returns and deletes an object.
func (a *Activities) Preflight(ctx context.Context, in PreflightInput) (PreflightResult, error) {
	host, _ := os.Hostname()
	res := PreflightResult{Worker: host, TaskQueue: activity.GetInfo(ctx).TaskQueue}
	v, err := a.DB.SchemaVersion(ctx)
	if err != nil {
		return res, fmt.Errorf("preflight: postgres: %w", err)
	}
	res.SchemaVersion = v
	probe := make([]byte, 1024)
	if _, err := rand.Read(probe); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	if err := a.Objects.Put(ctx, in.ProbeKey, probe); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	got, err := checkpoint.ReadBlob(ctx, a.Objects, in.ProbeKey, int64(len(probe)))
	if err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	if !bytes.Equal(got, probe) {
		return res, errors.New("preflight: object store returned other bytes than were written")
	}
	if err := a.Objects.Delete(ctx, in.ProbeKey); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	res.ObjectBytes = len(got)
	return res, nil
}
