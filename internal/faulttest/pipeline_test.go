package faulttest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/devstack"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

var updateHistory = flag.Bool("update-history", false, "record ../../workflows/testdata/pipeline_history.json from the reference run")

// pipelineSpec is the micro preset stretched so that every training stage
// lasts long enough to be hit mid-way, with a short heartbeat timeout so a
// dead worker is noticed in seconds.
const pipelineSpec = `preset: micro
seed: 7
sft: {steps: 1000, checkpoint_every: 100, eval_every: 500}
rm: {steps: 300, checkpoint_every: 50, eval_every: 300}
ppo: {iterations: 48, checkpoint_every: 6}
retry: {heartbeat_timeout: 5s, max_interval: 5s}
labels: {deadline: 30m}
`

// pipelineEnv is a private local stack (its services can be stopped and
// restarted without touching the shared test stack), the CLI binary for
// worker processes, and the simulated labelers running in the test.
type pipelineEnv struct {
	t    *testing.T
	st   *devstack.Stack
	cfg  config.Config
	env  []string
	bin  string
	db   *postgres.DB
	spec string

	mu      sync.Mutex
	workers []*exec.Cmd
}

func newPipelineEnv(t *testing.T) *pipelineEnv {
	testenv.Config(t)
	ctx := context.Background()
	env, ports := testenv.PrivateStack(t)
	env = append(env, "INSTRUCTFLOW_TEMPORAL_TASK_QUEUE=pipeline-test")
	for _, kv := range env[len(os.Environ()):] {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg := testenv.Config(t)
	cfg.Temporal.UIPort = ports["ui"]
	opts, err := devstack.OptionsFrom(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = st.Stop(sctx)
	})
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := control.LoadDemoTask(ctx, db); err != nil {
		t.Fatal(err)
	}
	p := &pipelineEnv{t: t, st: st, cfg: cfg, env: env, bin: testenv.BuildCLI(t), db: db, spec: filepath.Join(t.TempDir(), "run.yaml")}
	if err := os.WriteFile(p.spec, []byte(pipelineSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	// The simulated labelers, as a labeling tool would: label whatever
	// batch is open, and keep going when Postgres is away.
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lctx.Err() == nil {
			_ = control.LabelUntilDone(lctx, db, "")
			select {
			case <-lctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() { stop(); <-done })
	t.Cleanup(p.killWorkers)
	return p
}

// startWorker starts `instructflow worker` as a process of its own.
func (p *pipelineEnv) startWorker(metricsAddr string) *exec.Cmd {
	p.t.Helper()
	cmd := exec.Command(p.bin, "worker")
	cmd.Env = append(p.env, "INSTRUCTFLOW_WORKER_METRICS_ADDRESS="+metricsAddr)
	log, err := os.Create(filepath.Join(p.t.TempDir(), "worker.log"))
	if err != nil {
		p.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.workers = append(p.workers, cmd)
	p.mu.Unlock()
	return cmd
}

func (p *pipelineEnv) killWorkers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		_ = w.Process.Kill()
		_ = w.Wait()
	}
	p.workers = nil
}

// kill9 kills a worker the hard way, as a crashed machine would.
func (p *pipelineEnv) kill9(w *exec.Cmd) {
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	_, _ = w.Process.Wait()
}

// terminate stops a worker gracefully and checks that it exits cleanly
// within a minute, saying that it lets running stages checkpoint; it
// returns the step of the checkpoint its running stage stopped after.
func (p *pipelineEnv) terminate(w *exec.Cmd) int64 {
	p.t.Helper()
	if err := w.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan *os.ProcessState, 1)
	go func() { st, _ := w.Process.Wait(); done <- st }()
	var state *os.ProcessState
	select {
	case state = <-done:
	case <-time.After(time.Minute):
		p.t.Fatal("worker still running a minute after SIGTERM")
	}
	log, _ := os.ReadFile(w.Stdout.(*os.File).Name())
	if !strings.Contains(string(log), "stop after their next checkpoint") {
		p.t.Errorf("worker log after SIGTERM:\n%s", log)
	}
	if state == nil || !state.Success() {
		p.t.Errorf("worker exited with %v after SIGTERM", state)
	}
	_, after, ok := strings.Cut(string(log), "stopped after its checkpoint at step ")
	var step int64
	if _, err := fmt.Sscan(after, &step); !ok || err != nil {
		p.t.Fatalf("the stopping worker did not stop its stage at a checkpoint:\n%s", log)
	}
	return step
}

// waitStep waits until a stage of run has recorded metrics at step >= step
// (they reach Postgres about once a second).
func (p *pipelineEnv) waitStep(run, stage string, step int64) {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		ms, err := p.db.Metrics(context.Background(), run, stage)
		if err == nil && len(ms) > 0 && ms[len(ms)-1].Step >= step {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("%s/%s never reached step %d", run, stage, step)
}

// startRun starts a run from the test spec in the background and returns a
// channel with its end: the report (JSON) or the error.
func (p *pipelineEnv) startRun(id string, sets ...string) <-chan runEnd {
	args := []string{"run", "start", "-f", p.spec, "--set", "id=" + id, "--wait", "--json"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return p.cli(args...)
}

type runEnd struct {
	report control.Report
	out    string
	err    error
}

func (p *pipelineEnv) cli(args ...string) <-chan runEnd {
	ch := make(chan runEnd, 1)
	go func() {
		out, _, err := p.run(args...)
		var r control.Report
		if err == nil {
			err = json.Unmarshal([]byte(out), &r)
		}
		ch <- runEnd{report: r, out: out, err: err}
	}()
	return ch
}

// run runs the instructflow binary on the test's stack, as a user would;
// its error carries what the command printed on stderr.
func (p *pipelineEnv) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(p.bin, args...)
	cmd.Env = p.env
	var out, errw strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Run(); err != nil {
		return out.String(), errw.String(), fmt.Errorf("instructflow %s: %w: %s", strings.Join(args, " "), err, errw.String())
	}
	return out.String(), errw.String(), nil
}

func (p *pipelineEnv) finished(ch <-chan runEnd) control.Report {
	p.t.Helper()
	select {
	case e := <-ch:
		if e.err != nil {
			p.t.Fatalf("run: %v\n%s", e.err, e.out)
		}
		return e.report
	case <-time.After(10 * time.Minute):
		p.t.Fatal("run did not finish in 10 minutes")
	}
	return control.Report{}
}

func stageOf(r control.Report, name string) postgres.Stage {
	for _, st := range r.Stages {
		if st.Name == name {
			return st
		}
	}
	return postgres.Stage{}
}

func resultOf(t *testing.T, st postgres.Stage) activities.StageResult {
	var r activities.StageResult
	if err := json.Unmarshal(st.Result, &r); err != nil {
		t.Fatalf("stage %s result %s: %v", st.Name, st.Result, err)
	}
	return r
}

// TestPipelineSurvivesFaults is the durable pipeline's proof, against the
// real Temporal dev server, Postgres and versitygw: a reference run; a run
// whose worker is killed with SIGKILL in SFT, in RM training and in PPO; a
// run that is paused and goes through a Temporal restart, 30 s without the
// object store and 30 s without Postgres. Every run completes, no killed
// stage restarts from zero, and all three final checkpoints are
// bit-identical (their manifests' SHA-256, which covers every file).
func TestPipelineSurvivesFaults(t *testing.T) {
	p := newPipelineEnv(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p.startWorker(metricsAddr)

	ref := p.finished(p.startRun("ref"))
	if ref.Status != "succeeded" || ref.Pipeline == nil || ref.Pipeline.OverheadShare <= 0 {
		t.Fatalf("reference run: %+v", ref)
	}
	for _, name := range []string{"sft", "labels", "snapshot", "rm", "ppo", "eval"} {
		if st := stageOf(ref, name); st.Status != "succeeded" || st.Attempts != 1 {
			t.Errorf("reference stage %s: %s after %d attempts", name, st.Status, st.Attempts)
		}
	}
	t.Logf("reference: ppo checkpoint %s (%s), overhead %.1f%%", stageOf(ref, "ppo").CheckpointKey,
		stageOf(ref, "ppo").CheckpointSHA, 100*ref.Pipeline.OverheadShare)
	checkMetricsEndpoint(t, metricsAddr)
	// The reward model's scores of its snapshot reach the label audit.
	out, _, err := p.run("labels", "audit", "--snapshot", "ref-rm", "--json")
	var audit struct {
		RMDisagreements []json.RawMessage `json:"rm_disagreements"`
	}
	if err != nil || json.Unmarshal([]byte(out), &audit) != nil || len(audit.RMDisagreements) == 0 {
		t.Errorf("audit of the reference run's snapshot lists no pairs the reward model disagrees with: %v\n%.500s", err, out)
	}
	if out, _, err := p.run("labels", "lineage", "ref"); err != nil || !strings.Contains(out, "ref-rm") {
		t.Errorf("lineage of the reference run: %v\n%s", err, out)
	}
	if *updateHistory {
		recordHistory(t, p.cfg, "ref", "pipeline_history.json")
	}

	t.Run("kill -9 the worker in SFT, RM and PPO", func(t *testing.T) {
		p.killWorkers()
		w := p.startWorker("")
		end := p.startRun("killed")
		p.waitStep("killed", "sft", 250)
		p.kill9(w)
		w = p.startWorker("")
		// A graceful stop (SIGTERM) lets SFT reach its next checkpoint,
		// then the worker exits; the stage continues from that checkpoint.
		p.waitStep("killed", "sft", 550)
		stoppedAt := p.terminate(w)
		w = p.startWorker("")
		for _, at := range []struct {
			stage string
			step  int64
		}{{"rm", 60}, {"ppo", 8}} {
			p.waitStep("killed", at.stage, at.step)
			p.kill9(w)
			w = p.startWorker("")
		}
		got := p.finished(end)
		if res := resultOf(t, stageOf(got, "sft")); res.ResumedFrom != stoppedAt {
			t.Errorf("sft last resumed from step %d, not from the checkpoint at %d the stopping worker committed", res.ResumedFrom, stoppedAt)
		}
		for _, name := range []string{"sft", "rm", "ppo"} {
			st := stageOf(got, name)
			res := resultOf(t, st)
			if st.Attempts < 2 || res.ResumedFrom == 0 {
				t.Errorf("%s: %d attempts, last resumed from step %d; want a retry that resumed from a checkpoint", name, st.Attempts, res.ResumedFrom)
			}
			p.sameContent(name, st, stageOf(ref, name))
		}
	})

	t.Run("pause, Temporal restart, object store and Postgres away for 30s", func(t *testing.T) {
		p.killWorkers()
		p.startWorker("")
		ctx := context.Background()
		end := p.startRun("outages")
		p.waitStep("outages", "sft", 250)
		if _, _, err := p.run("run", "pause", "outages"); err != nil {
			t.Fatal(err)
		}
		out, _, err := p.run("run", "status", "outages")
		if err != nil || !strings.Contains(out, "paused") {
			t.Errorf("status while paused: %v\n%s", err, out)
		}
		// Unpause at once: the stage's attempt learns of the cancel only
		// with its next heartbeat, after the unpause; the run must go on.
		if _, _, err := p.run("run", "unpause", "outages"); err != nil {
			t.Fatal(err)
		}
		p.waitStep("outages", "rm", 20)
		if err := p.st.StopService(ctx, "temporal"); err != nil {
			t.Fatal(err)
		}
		if err := p.st.StartService(ctx, "temporal"); err != nil {
			t.Fatal(err)
		}
		p.waitStep("outages", "rm", 150)
		outage(t, p.st, "s3", 30*time.Second)
		p.waitStep("outages", "ppo", 4)
		outage(t, p.st, "postgres", 30*time.Second)
		got := p.finished(end)
		if got.Status != "succeeded" {
			t.Fatalf("run %s", got.Status)
		}
		for _, name := range []string{"sft", "rm", "ppo"} {
			p.sameContent(name, stageOf(got, name), stageOf(ref, name))
		}
	})

	t.Run("a failed run resumes with a fixed setting without redoing SFT and RM", func(t *testing.T) {
		p.killWorkers()
		p.startWorker("")
		e := <-p.startRun("fixme", "ppo.max_new_tokens=28")
		if e.err == nil || !strings.Contains(e.err.Error(), "max_new_tokens") {
			t.Fatalf("run with a PPO setting too long for the context: %v", e.err)
		}
		ctx := context.Background()
		before := map[string]postgres.Stage{}
		for _, name := range []string{"sft", "labels", "snapshot", "rm"} {
			st, err := p.db.GetStage(ctx, "fixme", name)
			if err != nil || st.Status != "succeeded" {
				t.Fatalf("%s before resume: %+v %v", name, st, err)
			}
			before[name] = st
		}
		if st, _ := p.db.GetStage(ctx, "fixme", "ppo"); st.Status != "failed" || !strings.Contains(st.Error, "max_new_tokens") {
			t.Errorf("ppo stage after the failure: %+v", st)
		}
		if _, _, err := p.run("run", "resume", "fixme", "--set", "sft.lr=1e-3"); err == nil || !strings.Contains(err.Error(), "sft.lr changes the result of stage sft") {
			t.Errorf("resume changing a finished stage: %v", err)
		}
		got := p.finished(p.cli("run", "resume", "fixme", "--set", "ppo.max_new_tokens=14", "--wait", "--json"))
		if got.Status != "succeeded" {
			t.Fatalf("resumed run %s", got.Status)
		}
		for name, b := range before {
			a := stageOf(got, name)
			if a.Attempts != b.Attempts || a.FinishedAt == nil || !a.FinishedAt.Equal(*b.FinishedAt) {
				t.Errorf("%s was redone: before %d attempts finished %v, after %d finished %v", name, b.Attempts, b.FinishedAt, a.Attempts, a.FinishedAt)
			}
		}
		for _, ws := range got.Pipeline.Stages {
			if ws.Name != "ppo" && ws.Name != "eval" && ws.Name != "gate" && (ws.Result == nil || !ws.Result.Reused) {
				t.Errorf("the resumed execution did not reuse %s", ws.Name)
			}
		}
		if st := stageOf(got, "ppo"); st.Status != "succeeded" || st.CheckpointKey == "" {
			t.Errorf("ppo after resume: %+v", st)
		}
	})
}

// sameContent checks that two runs' final checkpoints of a stage hold the
// same files, byte for byte: every file's SHA-256 in their manifests (the
// manifests themselves differ, as they name their run).
func (p *pipelineEnv) sameContent(stage string, a, b postgres.Stage) {
	p.t.Helper()
	ctx := context.Background()
	store, err := objectstore.Open(ctx, p.cfg.S3)
	if err != nil {
		p.t.Fatal(err)
	}
	var files [2]string
	for i, st := range []postgres.Stage{a, b} {
		parts := strings.Split(strings.TrimSuffix(st.CheckpointKey, "/"), "/") // runs/<run>/<stage>/<step>
		if len(parts) != 4 {
			p.t.Fatalf("%s: checkpoint key %q", stage, st.CheckpointKey)
		}
		step, _ := strconv.ParseInt(parts[3], 10, 64)
		cp, err := checkpoint.Store{Blobs: store, Prefix: strings.Join(parts[:3], "/") + "/"}.Load(ctx, step)
		if err != nil {
			p.t.Fatal(err)
		}
		if cp.ID != st.CheckpointSHA {
			p.t.Errorf("%s: stored manifest %s, recorded %s", st.CheckpointKey, cp.ID, st.CheckpointSHA)
		}
		for _, name := range slices.Sorted(maps.Keys(cp.Files)) {
			files[i] += fmt.Sprintf("%x %s\n", sha256.Sum256(cp.Files[name]), name)
		}
	}
	if files[0] != files[1] {
		p.t.Errorf("%s: final checkpoints differ:\n%s\nreference:\n%s", stage, files[0], files[1])
	} else {
		p.t.Logf("%s: final checkpoint bit-identical to the reference:\n%s", stage, files[0])
	}
}

// outage stops a service for d and brings it back.
func outage(t *testing.T, st *devstack.Stack, name string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	if err := st.StopService(ctx, name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if err := st.StartService(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func checkMetricsEndpoint(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`instructflow_checkpoints_total{stage="sft"}`, `instructflow_stage_attempts_total{outcome="succeeded",stage="ppo"} 1`, "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// recordHistory writes a run's workflow history to the testdata of package
// workflows, for its replay test.
func recordHistory(t *testing.T, cfg config.Config, id, file string) {
	c, err := control.DialTemporal(context.Background(), cfg.Temporal, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testenv.RecordHistory(t, c, id, "", "../../workflows/testdata/"+file)
}

// TestRecordHistories records, on the real dev server, the histories of
// the pipeline's other paths for the replay test in package workflows: a
// run paused and unpaused in SFT that then waits at its gate until
// approved, and a run cancelled in SFT. It runs only with -update-history.
func TestRecordHistories(t *testing.T) {
	if !*updateHistory {
		t.Skip("records workflow histories for the replay test; run with -update-history")
	}
	p := newPipelineEnv(t)
	p.startWorker("")
	end := p.startRun("gated", "gate.min_rm_accuracy=0.99")
	p.waitStep("gated", "sft", 250)
	for _, cmd := range []string{"pause", "unpause"} {
		if _, _, err := p.run("run", cmd, "gated"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, _, err := p.run("run", "status", "gated")
		if err == nil && strings.Contains(out, "gate: ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run never waited at its gate:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	if _, _, err := p.run("run", "approve", "gated"); err != nil {
		t.Fatal(err)
	}
	if got := p.finished(end); got.Status != "succeeded" {
		t.Fatalf("gated run %s", got.Status)
	}
	recordHistory(t, p.cfg, "gated", "pipeline_gate_history.json")

	end = p.startRun("cancelled")
	p.waitStep("cancelled", "sft", 100)
	if _, _, err := p.run("run", "cancel", "cancelled"); err != nil {
		t.Fatal(err)
	}
	if e := <-end; e.err == nil {
		t.Fatal("a cancelled run reported success")
	}
	recordHistory(t, p.cfg, "cancelled", "pipeline_cancel_history.json")
}
