package activities

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
)

// Heartbeat is what a stage activity heartbeats: where it is and its last
// committed checkpoint. A retried attempt reads it to say where it resumes.
type Heartbeat struct {
	Step       int64              `json:"step"`
	Total      int64              `json:"total"`
	Checkpoint string             `json:"checkpoint,omitempty"` // key of the last committed checkpoint
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	// Seconds inside the trainer and waiting for labels so far, over all
	// attempts: a retry adds its own to the last heartbeat's.
	Seconds     float64 `json:"seconds"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
}

// ETASeconds is the stage's time left at its pace so far (trainer and
// waiting time over the steps done, all attempts); 0 when unknown.
func (h Heartbeat) ETASeconds() float64 {
	if h.Step <= 0 || h.Total <= h.Step {
		return 0
	}
	return (h.Seconds + h.WaitSeconds) / float64(h.Step) * float64(h.Total-h.Step)
}

// ErrWorkerStopping: the worker is shutting down; the stage stopped right
// after committing a checkpoint, and a retry on another worker continues
// from it.
var ErrWorkerStopping = errors.New("worker stopping")

// tracker turns a trainer's progress reports into heartbeats and Postgres
// metrics, off the training goroutine: a slow or unreachable Postgres never
// stalls training (metrics wait in memory and are written when it answers
// again). It sends nothing to the workflow: a signal per report would grow
// the workflow's history without bound (Temporal ends a run at 51,200
// events), and `run status` reads the live step from the heartbeat.
//
// It is also the stage's watchdog: when the trainer reports no new step
// for the worker's stall timeout (waiting for people excepted), it stops
// heartbeating and closes stalled.
type tracker struct {
	a     *Activities
	run   string
	stage runstate.Stage
	sink  *stageSink

	mu      sync.Mutex
	beat    Heartbeat
	pending []stage.Report
	// seconds and waited are the time inside the trainer and waiting,
	// earlier attempts included, up to the segment that started at
	// since/waitSince (zero when none runs).
	seconds, waited  float64
	since, waitSince time.Time
	// queued is when the stage began waiting for a compute slot (zero
	// when it does not wait): the watchdog does not count that time.
	queued time.Time
	// moved is when this attempt last reported a new step (or started, or
	// stopped waiting); step is that step, -1 before the first report.
	moved time.Time
	step  int64

	stalled  chan struct{} // closed by the watchdog; stallErr says why
	stallErr error

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// workerStop closes when the worker shuts down: the stage stops right
	// after its next checkpoint.
	workerStop <-chan struct{}
	log        tlog.Logger
}

func (a *Activities) newTracker(ctx context.Context, run string, name runstate.Stage, sink *stageSink) *tracker {
	t := &tracker{a: a, run: run, stage: name, sink: sink, moved: time.Now(), step: -1, stalled: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}), workerStop: activity.GetWorkerStopChannel(ctx),
		log: activity.GetLogger(ctx)}
	info := activity.GetInfo(ctx)
	if info.Attempt > 1 && activity.HasHeartbeatDetails(ctx) {
		var last Heartbeat
		if err := activity.GetHeartbeatDetails(ctx, &last); err == nil {
			t.log.Info("retried stage resumes", "stage", name, "attempt", info.Attempt,
				"last_step", last.Step, "last_checkpoint", last.Checkpoint)
			t.beat = last
			t.seconds, t.waited = last.Seconds, last.WaitSeconds
		}
	}
	go t.loop(ctx)
	return t
}

// loop heartbeats every second and writes pending metrics, until close or
// a stall.
func (t *tracker) loop(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.a.heartbeatEvery())
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		beat := t.beat
		beat.Metrics = maps.Clone(beat.Metrics)
		beat.Seconds, beat.WaitSeconds = t.totalsLocked()
		stalled := t.stalledLocked(time.Now())
		t.mu.Unlock()
		if stalled != nil {
			t.stallErr = stalled
			t.log.Error(stalled.Error(), "run", t.run)
			close(t.stalled) // and no heartbeat from now on: Temporal also sees the attempt as dead
			return
		}
		activity.RecordHeartbeat(ctx, beat)
		if t.a.onBeat != nil {
			t.a.onBeat(beat)
		}
		t.flush(ctx)
	}
}

// stalledLocked returns the watchdog's error when the attempt has reported
// no new step for the stall timeout, and is not waiting for people.
func (t *tracker) stalledLocked(now time.Time) error {
	limit := t.a.stallTimeout()
	if !t.waitSince.IsZero() || !t.queued.IsZero() || now.Sub(t.moved) < limit {
		return nil
	}
	since := "the attempt started (no step reported yet)"
	if t.step >= 0 {
		since = fmt.Sprintf("step %d", t.step)
	}
	return temporal.NewApplicationError(fmt.Sprintf(
		"%s: no progress for %s since %s (worker.stall_timeout); the attempt stops and is retried from the last checkpoint",
		t.stage, limit, since), ErrTypeStalled)
}

// progress is the trainers' stage.Progress.
func (t *tracker) progress(r stage.Report) error {
	t.mu.Lock()
	if r.Step != t.step {
		t.step, t.moved = r.Step, time.Now()
	}
	t.beat.Step, t.beat.Total, t.beat.Metrics = r.Step, r.Total, r.Metrics
	if r.Checkpoint != "" {
		t.beat.Checkpoint = t.checkpoint(r.Step, r.Checkpoint).Key()
	}
	if len(r.Metrics) > 0 || r.Checkpoint != "" {
		t.pending = append(t.pending, r)
	}
	t.mu.Unlock()
	t.a.Metrics.reported(t.stage, r.Step, r.Checkpoint != "")
	if r.Checkpoint != "" && closed(t.workerStop) {
		err := fmt.Errorf("%w: %s stopped after its checkpoint at step %d", ErrWorkerStopping, t.stage, r.Step)
		t.log.Warn(err.Error(), "run", t.run)
		return err
	}
	return nil
}

// alive tells the watchdog that work which reports no steps (scoring,
// evaluation) is still moving.
func (t *tracker) alive() {
	t.mu.Lock()
	t.moved = time.Now()
	t.mu.Unlock()
}

// timed runs fn in one of the worker's compute slots (waiting for one
// first) and counts its time as the trainer's.
func (t *tracker) timed(ctx context.Context, fn func() error) error {
	t.mu.Lock()
	t.queued = time.Now()
	t.mu.Unlock()
	err := t.a.acquire(ctx)
	t.mu.Lock()
	t.queued, t.moved = time.Time{}, time.Now()
	t.since = time.Now()
	t.mu.Unlock()
	if err != nil {
		return err
	}
	defer t.a.release()
	err = fn()
	t.mu.Lock()
	d := time.Since(t.since).Seconds()
	t.seconds, t.since = t.seconds+d, time.Time{}
	t.mu.Unlock()
	t.a.Metrics.trained(t.stage, d)
	return err
}

// waiting counts the time from now until done() as waiting for people,
// which the watchdog does not count as a stall (its clock starts again at
// done).
func (t *tracker) waiting() (done func()) {
	t.mu.Lock()
	t.waitSince = time.Now()
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.waited, t.waitSince = t.waited+time.Since(t.waitSince).Seconds(), time.Time{}
		t.moved = time.Now()
		t.mu.Unlock()
	}
}

// totals returns the trainer and waiting seconds so far, all attempts.
func (t *tracker) totals() (seconds, waited float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.totalsLocked()
}

func (t *tracker) totalsLocked() (seconds, waited float64) {
	seconds, waited = t.seconds, t.waited
	if !t.since.IsZero() {
		seconds += time.Since(t.since).Seconds()
	}
	if !t.waitSince.IsZero() {
		waited += time.Since(t.waitSince).Seconds()
	}
	return seconds, waited
}

// flush writes the pending metrics and checkpoint records; what fails
// stays pending.
func (t *tracker) flush(ctx context.Context) {
	t.mu.Lock()
	pending := t.pending
	t.pending = nil
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.a.Metrics.pendingMetrics(len(t.pending))
		t.mu.Unlock()
	}()
	for i, r := range pending {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := t.record(wctx, r)
		cancel()
		if err != nil {
			t.mu.Lock()
			t.pending = append(pending[i:], t.pending...)
			t.mu.Unlock()
			return
		}
	}
}

// record writes one report: its metrics, and the manifest hash of the
// checkpoint it committed, against which a resume checks it.
func (t *tracker) record(ctx context.Context, r stage.Report) error {
	if r.Checkpoint != "" {
		cp := t.checkpoint(r.Step, r.Checkpoint)
		if err := t.a.DB.RecordCheckpoint(ctx, t.run, string(t.stage), cp.Step, cp.Key(), cp.SHA256); err != nil {
			return err
		}
	}
	if len(r.Metrics) == 0 {
		return nil
	}
	return t.a.DB.RecordMetrics(ctx, t.run, string(t.stage), r.Step, r.Metrics)
}

// checkpoint names the stage's checkpoint at step with manifest hash sha
// (a trainer's Result.Checkpoint); nil when sha is empty.
func (t *tracker) checkpoint(step int64, sha string) *Checkpoint {
	if sha == "" {
		return nil
	}
	return &Checkpoint{Run: t.run, Stage: t.stage, Step: step, SHA256: sha}
}

// close stops the heartbeat loop (once) and waits for it.
func (t *tracker) close() {
	t.closeOnce.Do(func() { close(t.stop) })
	<-t.done
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
