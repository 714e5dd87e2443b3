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
	CreateBatch(ctx context.Context, name, run string, deadline time.Time, items []postgres.BatchItem) (postgres.Batch, error)
	GetBatch(ctx context.Context, name string) (postgres.Batch, error)
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
	// LabelPoll overrides how often label collection looks for new labels
	// (2s).
	LabelPoll time.Duration
	// StallTimeout is how long a stage may report no new step before its
	// attempt fails, retryably, as stalled (0: DefaultStallTimeout). Time
	// spent waiting for labels does not count.
	StallTimeout time.Duration
	// beatEvery overrides how often a stage heartbeats (1s), and onBeat
	// sees every heartbeat a stage sends (the SDK batches them): for tests.
	beatEvery time.Duration
	onBeat    func(Heartbeat)
	// Metrics, when set, counts stage work for Prometheus.
	Metrics *Metrics
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
