package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
)

// The external-trainer contract (docs/trainer-contract.md): a stage set
// to trainer: exec runs its command with a job file, reads progress as
// JSON lines on its stdout, and takes the checkpoints it commits under the
// stage's prefix as if the built-in trainer had saved them.

// JobContract is the version of the job file's format.
const JobContract = 1

// ExitBadInput is the exit status by which an external trainer says its
// input is wrong: the stage fails without a retry, with the trainer's
// message (its last stderr lines).
const ExitBadInput = 3

// BadInputFile, in the job's work_dir, says the same whatever the exit
// status (launchers such as torchrun exit 1 when a process exits 3): the
// stage fails without a retry, with the file's text as the message.
const BadInputFile = "bad_input"

// Trainers is what a worker gives the external trainers it runs.
type Trainers struct {
	// Env is added to each trainer's environment: the object store's
	// settings and credentials (never written in the job file).
	Env []string
	// Binary is this instructflow executable, which trainers call as
	// `$INSTRUCTFLOW_BIN ckpt put|get`.
	Binary string
	// Dir holds a folder per attempt: its job file and the trainer's
	// scratch space (removed when the attempt ends).
	Dir string
	// ObjectStore says where the keys in job files are (no credentials).
	ObjectStore JobObjectStore
}

// Job is the job file. Fields are added, never renamed or removed: a
// trainer written against an older one keeps working.
type Job struct {
	Contract int            `json:"contract"`
	Run      string         `json:"run"`
	Stage    runstate.Stage `json:"stage"`
	Attempt  int32          `json:"attempt"`
	Seed     uint64         `json:"seed"`
	Threads  int            `json:"threads"`
	// Inputs are the checkpoints the stage starts from, by role: sft:
	// "init" (the model the built-in trainer would start from: model.base's
	// weights or fresh ones from the seed) and "base" (model.base's folder,
	// with its tokenizer, when there is one); rm: "sft"; ppo: "sft", "rm".
	Inputs map[string]JobCheckpoint `json:"inputs"`
	Data   JobData                  `json:"data"`
	// Settings are the stage's settings as the built-in trainer takes them
	// (sft.*, rm.* or ppo.*: steps, batch_size, lr, ...), seed included.
	Settings json.RawMessage `json:"settings"`
	// Args are the stage's free-form args, as given.
	Args map[string]any `json:"args"`
	// Output is where the trainer commits checkpoints: <prefix><step>/.
	Output struct {
		Prefix string `json:"prefix"`
	} `json:"output"`
	// ResumeFrom is the newest committed checkpoint of the stage (from an
	// earlier attempt), to continue from; null: start afresh.
	ResumeFrom *JobCheckpoint `json:"resume_from"`
	// HeartbeatSeconds: the attempt fails when the trainer prints no
	// progress line for this long; GraceSeconds: how long it has after
	// SIGTERM to save and exit.
	HeartbeatSeconds float64        `json:"heartbeat_seconds"`
	GraceSeconds     float64        `json:"grace_seconds"`
	WorkDir          string         `json:"work_dir"`
	ObjectStore      JobObjectStore `json:"object_store"`
	Tokenizer        JobTokenizer   `json:"tokenizer"`
}

// JobCheckpoint names a committed checkpoint: its folder's key, step and
// manifest SHA-256 (`instructflow ckpt get KEY DIR --sha256 SHA`).
type JobCheckpoint struct {
	Key    string `json:"key"`
	Step   int64  `json:"step"`
	SHA256 string `json:"sha256"`
}

// JobData is the stage's data: JSON Lines files in one committed folder
// (fetch it as a checkpoint), by role, rendered with Template and
// tokenised with the run's tokenizer.
type JobData struct {
	JobCheckpoint
	Files    map[string]string `json:"files"`
	Rows     map[string]int    `json:"rows"`
	Template string            `json:"template"`
}

// JobObjectStore says where keys live; the credentials are in the
// trainer's environment.
type JobObjectStore struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	Bucket   string `json:"bucket"`
}

// JobTokenizer is what a trainer needs of the run's tokenizer when it
// uses the token ids in the data: its size and end-of-text id (which also
// pads).
type JobTokenizer struct {
	VocabSize int   `json:"vocab_size"`
	EOS       int32 `json:"eos_id"`
}

// ProgressLine is one line of a trainer's stdout that reports progress.
type ProgressLine struct {
	Step    *int64             `json:"step"`
	Total   int64              `json:"total"`
	Metrics map[string]float64 `json:"metrics"`
	// Checkpoint is the key of a checkpoint committed at this step.
	Checkpoint string `json:"checkpoint"`
}

// jobSpec is what a stage adds to the job: its input checkpoints, its
// data files (role -> rows) and its settings.
type jobSpec struct {
	inputs   map[string]JobCheckpoint
	data     map[string][]any
	settings any
	counts   map[string]float64 // the data's cut and dropped rows, for the result
}

// external runs a stage on its external trainer: it commits the stage's
// data, writes the job file, runs the command in its own process group
// and turns its progress lines into heartbeats, metrics and checkpoint
// records, until it exits.
func (a *Activities) external(ctx context.Context, t *tracker, s runspec.Spec, name runstate.Stage, tok JobTokenizer, spec jobSpec) (StageResult, error) {
	tr := s.TrainerOf(name)
	info := activity.GetInfo(ctx)
	job := Job{Contract: JobContract, Run: s.ID, Stage: name, Attempt: info.Attempt, Seed: s.Seed, Threads: s.Threads,
		Inputs: spec.inputs, Args: tr.Args, HeartbeatSeconds: s.Retry.HeartbeatTimeout.Seconds(),
		GraceSeconds: tr.GraceOrDefault().Seconds(), ObjectStore: a.Trainers.ObjectStore, Tokenizer: tok}
	job.Output.Prefix = t.sink.Prefix
	settings, err := json.Marshal(spec.settings)
	if err != nil {
		return StageResult{}, err
	}
	job.Settings = settings
	if job.Data, err = a.commitData(ctx, s, name, spec.data); err != nil {
		return StageResult{}, err
	}
	job.Data.Template = cmp.Or(tr.Template, s.Data.Template, "plain")
	cp, ok, err := t.sink.Latest(ctx)
	if err != nil {
		return StageResult{}, fmt.Errorf("find the latest checkpoint: %w", err)
	}
	if ok {
		job.ResumeFrom = &JobCheckpoint{Key: t.sink.Key(cp.Step), Step: cp.Step, SHA256: cp.ID}
	}
	dir := filepath.Join(a.Trainers.Dir, s.ID, string(name), "attempt-"+strconv.Itoa(int(info.Attempt)))
	if err := os.RemoveAll(dir); err != nil {
		return StageResult{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return StageResult{}, fmt.Errorf("job folder: %w", err)
	}
	defer os.RemoveAll(dir)
	job.WorkDir = dir
	data, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return StageResult{}, err
	}
	jobFile := filepath.Join(dir, "job.json")
	if err := os.WriteFile(jobFile, data, 0o600); err != nil {
		return StageResult{}, fmt.Errorf("job file: %w", err)
	}

	p := &trainerProcess{t: t, heartbeat: s.Retry.HeartbeatTimeout, grace: tr.GraceOrDefault(),
		metrics: map[string]float64{}}
	env := append(append(trainerEnviron(os.Environ()), a.Trainers.Env...), "INSTRUCTFLOW_JOB="+jobFile, "INSTRUCTFLOW_BIN="+a.Trainers.Binary)
	err = t.timed(ctx, func() error { return p.run(ctx, tr.Command, env) })
	if err != nil {
		var exit *exitError
		verdict, _ := os.ReadFile(filepath.Join(dir, BadInputFile))
		switch {
		case errors.As(err, &exit) && len(verdict) > 0: // a launcher (torchrun) may have changed the exit status
			return StageResult{}, errkind.BadInputf("%s: the trainer refused its input: %s", name, strings.TrimSpace(string(verdict[:min(len(verdict), 4096)])))
		case errors.As(err, &exit) && exit.code == ExitBadInput:
			return StageResult{}, errkind.BadInputf("%s: the trainer refused its input: %s", name, exit.tail)
		case errors.Is(err, errContract): // the same program would break it again: fix it, then `run resume`
			return StageResult{}, errkind.BadInputf("%s: %v", name, err)
		}
		return StageResult{}, err
	}
	if p.final == nil || p.final.Step != p.step {
		return StageResult{}, errkind.BadInputf("%s: %v: it exited 0 without naming its final checkpoint (the progress line of its last step, %d, must have \"checkpoint\")", name, errContract, p.step)
	}
	metrics := p.metrics
	metrics["steps"] = float64(p.final.Step)
	for k, v := range spec.counts {
		metrics[k] = v
	}
	return StageResult{Checkpoint: p.final, Metrics: metrics, Trainer: runspec.ExecTrainer}, nil
}

// trainerEnviron is the worker's environment without what a trainer must
// not hold: the database's credentials.
func trainerEnviron(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "INSTRUCTFLOW_POSTGRES_") })
}

// commitData writes the stage's data as JSON Lines files into one
// committed folder, runs/<run>/<stage>-data/<n>/ (see commitFolder).
func (a *Activities) commitData(ctx context.Context, s runspec.Spec, name runstate.Stage, rows map[string][]any) (JobData, error) {
	prefix, err := checkpoint.StagePrefix(s.ID, string(name)+"-data")
	if err != nil {
		return JobData{}, err
	}
	d := JobData{Files: map[string]string{}, Rows: map[string]int{}}
	var files []stage.File
	for role, list := range rows {
		var buf []byte
		for _, r := range list {
			line, err := json.Marshal(r)
			if err != nil {
				return JobData{}, fmt.Errorf("data %s: %w", role, err)
			}
			buf = append(append(buf, line...), '\n')
		}
		file := role + ".jsonl"
		files = append(files, stage.File{Name: file, Data: buf})
		d.Files[role], d.Rows[role] = file, len(list)
	}
	cp, err := commitFolder(ctx, checkpoint.Store{Blobs: a.Objects, Prefix: prefix}, files)
	if err != nil {
		return JobData{}, fmt.Errorf("commit the trainer's data: %w", err)
	}
	d.JobCheckpoint = cp
	return d, nil
}

// errContract marks what a trainer did against the contract.
var errContract = errors.New("the trainer broke its contract")

// exitError is a trainer that exited unsuccessfully, with the last lines
// of its stderr.
type exitError struct {
	code int // -1 for a signal
	how  string
	tail string
}

func (e *exitError) Error() string {
	if e.tail == "" {
		return "trainer " + e.how
	}
	return "trainer " + e.how + ": " + e.tail
}

// progressOf parses a stdout line: ok is false for a line that is not a
// JSON object with "step" (a launcher's banner), which is only logged.
func progressOf(line []byte) (ProgressLine, bool) {
	var p ProgressLine
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &p) != nil || p.Step == nil {
		return ProgressLine{}, false
	}
	return p, true
}

// report turns a progress line into the tracker's report, checking that
// a named checkpoint is committed under the stage's prefix at its step.
func (p *trainerProcess) report(ctx context.Context, line ProgressLine) error {
	r := stage.Report{Step: *line.Step, Total: line.Total, Metrics: line.Metrics}
	for k, v := range line.Metrics {
		p.metrics[k] = v
	}
	if line.Checkpoint != "" {
		prefix, step, err := checkpoint.ParseKey(line.Checkpoint)
		store := p.t.sink.Store
		if err != nil || prefix != store.Prefix || step != r.Step {
			return fmt.Errorf("%w: checkpoint %q at step %d is not %s (the stage's output prefix and the line's step)",
				errContract, line.Checkpoint, r.Step, store.Key(r.Step))
		}
		var sha string
		for try := 0; ; try++ { // a store that is briefly away is waited for, as the built-in trainers' saves are
			if sha, err = store.Committed(ctx, step); err == nil || errors.Is(err, errkind.NotFound) || errors.Is(err, errkind.Corrupt) || try == 4 {
				break
			}
			select {
			case <-time.After(time.Second << try):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case errors.Is(err, errkind.NotFound) || errors.Is(err, errkind.Corrupt):
			return fmt.Errorf("%w: checkpoint %s is not committed (%v); commit it with `instructflow ckpt put DIR KEY` before naming it", errContract, line.Checkpoint, err)
		case err != nil:
			return fmt.Errorf("check checkpoint %s: %w", line.Checkpoint, err)
		}
		r.Checkpoint = sha
		p.final = p.t.checkpoint(step, sha)
	}
	p.step = max(p.step, r.Step) // a repeated line may come late
	return p.t.progress(r)
}
