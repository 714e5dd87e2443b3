package activities

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/instructflow/instructflow/checkpoint/blobtest"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
)

// memoryDB is the part of the Postgres store that the stage frame uses, in
// memory; the other methods of database are left nil.
type memoryDB struct {
	database
	mu      sync.Mutex
	stages  map[string]postgres.Stage
	metrics int
}

func (m *memoryDB) GetStage(_ context.Context, run, name string) (postgres.Stage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.stages[run+"/"+name]
	if !ok {
		return st, errkind.NotFound
	}
	return st, nil
}

func (m *memoryDB) set(run, name string, fn func(*postgres.Stage)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stages == nil {
		m.stages = map[string]postgres.Stage{}
	}
	st := m.stages[run+"/"+name]
	fn(&st)
	m.stages[run+"/"+name] = st
	return nil
}

func (m *memoryDB) BeginStage(_ context.Context, run, name, sha string) error {
	return m.set(run, name, func(st *postgres.Stage) { st.Status, st.ConfigSHA256 = "running", sha; st.Attempts++ })
}

func (m *memoryDB) FinishStage(_ context.Context, run, name string, result []byte, _, _ string) error {
	return m.set(run, name, func(st *postgres.Stage) { st.Status, st.Result = "succeeded", result })
}

func (m *memoryDB) EndStage(_ context.Context, run, name, status, errText string) error {
	return m.set(run, name, func(st *postgres.Stage) { st.Status, st.Error = status, errText })
}

func (m *memoryDB) RecordMetrics(context.Context, string, string, int64, map[string]float64) error {
	m.mu.Lock()
	m.metrics++
	m.mu.Unlock()
	return nil
}

func (m *memoryDB) RecordCheckpoint(context.Context, string, string, int64, string, string) error {
	return nil
}

func (m *memoryDB) CheckpointSHA(context.Context, string, string, int64) (string, error) {
	return "", errkind.NotFound
}

func memorySpec(t *testing.T, id string) runspec.Spec {
	t.Helper()
	s, err := runspec.Preset("micro")
	if err != nil {
		t.Fatal(err)
	}
	s.ID = id
	return s
}

// fakeStage is a stage activity: the real frame (runStage: tracker,
// heartbeats, watchdog) around a fake trainer.
func fakeStage(a *Activities, trainer func(ctx context.Context, t *tracker) error) func(context.Context, StageInput) (StageResult, error) {
	return func(ctx context.Context, in StageInput) (StageResult, error) {
		return a.runStage(ctx, in.Spec, "sft", func(ctx context.Context, t *tracker) (StageResult, error) {
			return StageResult{}, t.timed(ctx, func() error { return trainer(ctx, t) })
		})
	}
}

// runFake runs a fake stage in the SDK's activity test environment and
// returns its error and the heartbeats it sent (each with the time it was
// seen), failing the test if the attempt does not end within limit.
func runFake(t *testing.T, a *Activities, limit time.Duration, trainer func(ctx context.Context, t *tracker) error) (error, func() []time.Time) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	var mu sync.Mutex
	var beats []time.Time
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) {
		mu.Lock()
		beats = append(beats, time.Now())
		mu.Unlock()
	})
	fn := fakeStage(a, trainer)
	env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: "FakeStage"})
	done := make(chan error, 1)
	go func() {
		_, err := env.ExecuteActivity("FakeStage", StageInput{Spec: memorySpec(t, "stall")})
		done <- err
	}()
	select {
	case err := <-done:
		return err, func() []time.Time { mu.Lock(); defer mu.Unlock(); return append([]time.Time(nil), beats...) }
	case <-time.After(limit):
		t.Fatalf("the stage attempt did not end within %s (a hung trainer heartbeats forever)", limit)
		return nil, nil
	}
}

// TestWatchdogFailsAHungTrainer: a trainer that reports step 3 and then
// hangs (ignoring its context, or honouring it) fails its attempt within
// about the stall timeout, with a retryable error that says for how long
// and since which step, and no heartbeat is sent after that.
func TestWatchdogFailsAHungTrainer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block func(ctx context.Context, release <-chan struct{})
	}{
		{"ignores its context", func(_ context.Context, release <-chan struct{}) { <-release }},
		{"honours its context", func(ctx context.Context, _ <-chan struct{}) { <-ctx.Done() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			a := &Activities{DB: &memoryDB{}, Objects: &blobtest.Memory{}, StallTimeout: 300 * time.Millisecond, beatEvery: 10 * time.Millisecond}
			start := time.Now()
			err, beats := runFake(t, a, 10*time.Second, func(ctx context.Context, tr *tracker) error {
				_ = tr.progress(stage.Report{Step: 3, Total: 10})
				tc.block(ctx, release)
				return ctx.Err()
			})
			took := time.Since(start)
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || app.Type() != ErrTypeStalled || app.NonRetryable() {
				t.Fatalf("attempt ended with %v, want a retryable %s application error", err, ErrTypeStalled)
			}
			if want := "sft: no progress for 300ms since step 3"; !strings.Contains(app.Message(), want) {
				t.Errorf("message %q lacks %q", app.Message(), want)
			}
			if took < 300*time.Millisecond || took > 3*time.Second {
				t.Errorf("the attempt failed after %s, want about the stall timeout 300ms", took)
			}
			n := len(beats())
			if n == 0 {
				t.Fatal("no heartbeat before the stall")
			}
			time.Sleep(100 * time.Millisecond)
			if got := beats(); len(got) != n || got[n-1].After(start.Add(took)) {
				t.Errorf("heartbeats went on after the stall: %d then %d", n, len(got))
			}
		})
	}
}

// TestWatchdogSparesProgressAndWaiting: a trainer that reports a new step
// more often than the stall timeout, and a stage that waits for labels
// for several stall timeouts, both finish.
func TestWatchdogSparesProgressAndWaiting(t *testing.T) {
	const limit = 200 * time.Millisecond
	for name, trainer := range map[string]func(context.Context, *tracker) error{
		"steps": func(_ context.Context, tr *tracker) error {
			for step := range int64(12) { // 1.2s in all, 100ms per step
				_ = tr.progress(stage.Report{Step: step, Total: 12})
				time.Sleep(limit / 2)
			}
			return nil
		},
		"waiting for labels": func(_ context.Context, tr *tracker) error {
			done := tr.waiting()
			time.Sleep(4 * limit)
			done()
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := &Activities{DB: &memoryDB{}, Objects: &blobtest.Memory{}, StallTimeout: limit, beatEvery: 10 * time.Millisecond}
			if err, _ := runFake(t, a, 10*time.Second, trainer); err != nil {
				t.Fatalf("a stage that made progress failed: %v", err)
			}
		})
	}
}

// TestLongStageSendsTheWorkflowNothing drives a stage through more
// progress than a workflow history could record as signals: 20,000
// reports and at least 13,000 heartbeats (at four events per signal, one
// signal per heartbeat would be 52,000 events, past Temporal's 51,200),
// under a workflow in the SDK's test environment. The workflow gets no
// signal at all, and the heartbeats, which `run status` reads, carry the
// live step to the end.
func TestLongStageSendsTheWorkflowNothing(t *testing.T) {
	const reports, minBeats = 20000, 13000
	var beats atomic.Int64
	var lastStep atomic.Int64
	a := &Activities{DB: &memoryDB{}, Objects: &blobtest.Memory{}, beatEvery: 20 * time.Microsecond,
		onBeat: func(hb Heartbeat) { beats.Add(1); lastStep.Store(hb.Step) }}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(time.Minute)
	env.RegisterActivityWithOptions(fakeStage(a, func(ctx context.Context, tr *tracker) error {
		deadline := time.Now().Add(30 * time.Second)
		for step := int64(1); step <= reports || beats.Load() < minBeats && time.Now().Before(deadline); step++ {
			if err := tr.progress(stage.Report{Step: min(step, reports), Total: reports}); err != nil {
				return err
			}
			if step%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		time.Sleep(20 * time.Millisecond) // a last heartbeat at the final step
		return nil
	}), activity.RegisterOptions{Name: "FakeStage"})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in StageInput) (int, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Hour, HeartbeatTimeout: time.Minute})
		if err := workflow.ExecuteActivity(ctx, "FakeStage", in).Get(ctx, nil); err != nil {
			return 0, err
		}
		signals := 0 // the progress signals of earlier versions, and any other
		for ch := workflow.GetSignalChannel(ctx, "progress"); ch.ReceiveAsync(nil); {
			signals++
		}
		return signals + len(workflow.GetUnhandledSignalNames(ctx)), nil
	}, workflow.RegisterOptions{Name: "OneStage"})
	env.ExecuteWorkflow("OneStage", StageInput{Spec: memorySpec(t, "long")})
	var signals int
	if err := env.GetWorkflowResult(&signals); err != nil {
		t.Fatal(err)
	}
	if signals != 0 {
		t.Errorf("the workflow got %d signals during the stage", signals)
	}
	if n := beats.Load(); n < minBeats {
		t.Errorf("%d heartbeats, want at least %d", n, minBeats)
	}
	if got := lastStep.Load(); got != reports {
		t.Errorf("the last heartbeat says step %d, want %d", got, reports)
	}
}

// TestTrainerPanicFailsTheAttempt: a trainer's panic (such as the engine's
// pool re-panicking a task's) reaches the SDK on the activity's goroutine,
// which fails the attempt with it instead of ending the worker process.
func TestTrainerPanicFailsTheAttempt(t *testing.T) {
	a := &Activities{DB: &memoryDB{}, Objects: &blobtest.Memory{}}
	err, _ := runFake(t, a, 10*time.Second, func(context.Context, *tracker) error {
		panic("model: shape mismatch")
	})
	var p *temporal.PanicError
	if !errors.As(err, &p) || !strings.Contains(p.Error(), "model: shape mismatch") {
		t.Fatalf("attempt ended with %v, want the trainer's panic", err)
	}
}

// TestStageWaitsForAComputeSlot: with every compute slot taken, a stage
// waits (heartbeating, not stalled, for longer than the stall timeout) and
// trains once a slot is free.
func TestStageWaitsForAComputeSlot(t *testing.T) {
	const limit = 200 * time.Millisecond
	a := &Activities{DB: &memoryDB{}, Objects: &blobtest.Memory{}, StallTimeout: limit, beatEvery: 10 * time.Millisecond, Slots: NewSlots(1)}
	if err := a.acquire(context.Background()); err != nil { // another stage computes
		t.Fatal(err)
	}
	var beats atomic.Int64
	a.onBeat = func(Heartbeat) { beats.Add(1) }
	freed := time.Now().Add(4 * limit)
	go func() { time.Sleep(time.Until(freed)); a.release() }()
	var trainedAt time.Time
	err, _ := runFake(t, a, 10*time.Second, func(context.Context, *tracker) error {
		trainedAt = time.Now()
		return nil
	})
	if err != nil {
		t.Fatalf("a stage waiting for a slot failed: %v", err)
	}
	if trainedAt.Before(freed) {
		t.Errorf("the stage trained %s before the slot was free", freed.Sub(trainedAt))
	}
	if n := beats.Load(); n < 10 {
		t.Errorf("%d heartbeats while waiting %s for a slot; want it to heartbeat", n, 4*limit)
	}
}
