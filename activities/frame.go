package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
)

// runStage is the frame of every stage activity: reuse the stored result
// of a stage that finished with the same settings; otherwise record the
// start, run work with a tracker (heartbeats, metrics, the checkpoint sink),
// and store the result. A user's mistake becomes a non-retryable error.
func (a *Activities) runStage(ctx context.Context, spec runspec.Spec, name runstate.Stage,
	work func(context.Context, *tracker) (StageResult, error),
) (StageResult, error) {
	run, hash := spec.ID, spec.StageHash(name)
	rec, err := a.DB.GetStage(ctx, run, string(name))
	switch {
	case err == nil && runstate.Status(rec.Status) == runstate.Succeeded && rec.Result != nil:
		if rec.ConfigSHA256 != hash {
			return StageResult{}, badInput(fmt.Errorf("%s: the stage finished with other settings; start a new run to change them", name))
		}
		var res StageResult
		if err := json.Unmarshal(rec.Result, &res); err != nil {
			return StageResult{}, fmt.Errorf("%s: stored result: %w", name, err)
		}
		// A retry whose first completion was lost is not a reuse: the
		// work was done in this execution.
		res.Reused = res.Execution != activity.GetInfo(ctx).WorkflowExecution.RunID
		a.Metrics.ended(name, "reused")
		return res, nil
	case err != nil && !errors.Is(err, errkind.NotFound):
		return StageResult{}, err
	}
	if err := a.DB.BeginStage(ctx, run, string(name), hash); err != nil {
		return StageResult{}, err
	}
	sink, err := a.stageSink(ctx, run, name)
	if err != nil {
		return StageResult{}, badInput(err)
	}
	t := a.newTracker(ctx, run, name, sink)
	defer func() { // best effort on the way out; done already on success
		t.close()
		t.flush(ctx)
	}()
	a.Metrics.started(name, 1)
	defer a.Metrics.started(name, -1)
	peak := startPeakRSS()
	res, err := a.watched(ctx, t, work)
	if errors.Is(err, errStalled) {
		a.Metrics.ended(name, "stalled")
		return StageResult{}, t.stallErr
	}
	if err != nil {
		if errors.Is(err, errkind.BadInput) {
			a.Metrics.ended(name, "bad_input")
			_ = a.DB.EndStage(ctx, run, string(name), string(runstate.Failed), err.Error())
			return StageResult{}, badInput(err)
		}
		a.Metrics.ended(name, "error")
		return StageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	t.close() // no heartbeat or metrics write after this point but the final flush
	res.Metrics = peak.record(res.Metrics)
	res.Stage, res.ResumedFrom = name, t.sink.resumedFrom()
	res.Seconds, res.WaitSeconds = t.totals()
	res.Execution = activity.GetInfo(ctx).WorkflowExecution.RunID
	t.flush(ctx)
	data, err := json.Marshal(res)
	if err != nil {
		return StageResult{}, err
	}
	key, sha := "", ""
	if res.Checkpoint != nil {
		key, sha = res.Checkpoint.Key(), res.Checkpoint.SHA256
	}
	if err := a.DB.FinishStage(ctx, run, string(name), data, key, sha); err != nil {
		return StageResult{}, err
	}
	a.Metrics.ended(name, string(runstate.Succeeded))
	return res, nil
}

// errStalled is what watched returns when the tracker's watchdog fired.
var errStalled = errors.New("stalled")

// watched runs work on a goroutine of its own and returns its result, or
// errStalled once the tracker sees no progress for the stall timeout. A
// stalled work's context is cancelled and it gets a short grace to return
// (shorter than the heartbeat timeout, so that the attempt fails with the
// stall's message, not as a heartbeat timeout); one that ignores its
// context is left behind, and the worker logs it.
func (a *Activities) watched(ctx context.Context, t *tracker, work func(context.Context, *tracker) (StageResult, error)) (StageResult, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res      StageResult
		err      error
		panicked any
		ok       bool // work returned
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if !o.ok {
				o.panicked = recover()
			}
			done <- o
		}()
		o.res, o.err = work(wctx, t)
		o.ok = true
	}()
	select {
	case o := <-done:
		if !o.ok { // on the activity's goroutine, where the SDK fails the attempt with it
			panic(o.panicked)
		}
		return o.res, o.err
	case <-t.stalled:
	}
	cancel()
	grace := min(a.stallTimeout()/10, 5*time.Second)
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 {
		grace = min(grace, hb/2)
	}
	select {
	case <-done:
	case <-time.After(grace):
		t.log.Error("stalled stage did not stop when cancelled; it is left running (restart the worker to free its memory and CPU)",
			"run", t.run, "stage", t.stage)
	}
	return StageResult{}, errStalled
}

// badInput makes err a non-retryable application error with its message.
func badInput(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
}
