package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/postgres"
)

// SnapshotLabels freezes the reward model's comparisons: the named
// snapshot, or the run's batch (with the spec's filters) as <run>-rm.
func (a *Activities) SnapshotLabels(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.Snapshot, func(ctx context.Context, _ *tracker) (StageResult, error) {
		s := in.Spec
		name := s.Labels.Snapshot
		if name == "" {
			name = s.ID + "-rm"
		}
		want := postgres.SnapshotFilter{Batch: in.Batch, ExcludeLabelers: s.Labels.ExcludeLabelers, ExcludeFlagged: s.Labels.ExcludeFlagged}
		snap, err := a.DB.Snapshot(ctx, name)
		if errors.Is(err, errkind.NotFound) && s.Labels.Snapshot == "" {
			snap, err = a.DB.SnapshotWhere(ctx, name, want)
		} else if err == nil && s.Labels.Snapshot == "" && !snap.Filter.Equal(want) {
			// <run>-rm exists (a retried attempt, a resumed run) but is reused
			// only if it froze this run's batch with this run's filters.
			got, _ := json.Marshal(snap.Filter)
			exp, _ := json.Marshal(want)
			return StageResult{}, errkind.BadInputf("snapshot: %s exists but was not made from this run's labels: it selects %s, this run needs %s; name the snapshot to use in labels.snapshot, or start a new run id",
				name, got, exp)
		}
		if errors.Is(err, errkind.NotFound) {
			return StageResult{}, fmt.Errorf("%w: snapshot: %w; fix labels.snapshot or labels.exclude_labelers", errkind.BadInput, err)
		}
		if errors.Is(err, errkind.Corrupt) {
			return StageResult{}, fmt.Errorf("%w: snapshot: %w", errkind.BadInput, err)
		}
		if err != nil {
			return StageResult{}, err
		}
		return StageResult{Snapshot: name, Metrics: map[string]float64{"comparisons": float64(len(snap.ComparisonIDs))}}, nil
	})
}
