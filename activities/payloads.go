package activities

// The payloads: what workflows pass to activities and get back (keys, names
// and hashes, never tensors), and the error types they tell apart. Their
// JSON lives in workflow histories and stage records: renaming a field or a
// value breaks runs in flight and the results of finished stages.

import (
	"encoding/json"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
)

// ErrTypeBadInput is the application-error type of a user's mistake (bad
// setting, missing data): workflows do not retry it.
const ErrTypeBadInput = "BadInput"

// ErrTypeStalled is the application-error type of an attempt whose trainer
// reported no new step for the worker's stall timeout: it is retried.
const ErrTypeStalled = "Stalled"

// StageInput is the input of every stage activity: the spec and the
// results of earlier stages, as names and hashes.
type StageInput struct {
	Spec     runspec.Spec `json:"spec"`
	SFT      *Checkpoint  `json:"sft,omitempty"`
	RM       *Checkpoint  `json:"rm,omitempty"`
	PPO      *Checkpoint  `json:"ppo,omitempty"`
	Batch    string       `json:"batch,omitempty"`
	Snapshot string       `json:"snapshot,omitempty"`
	// Deadline is when label collection stops waiting.
	Deadline time.Time `json:"deadline,omitzero"`
}

// StageResult is what a stage produced; it is stored with the stage, so a
// resumed run reuses it instead of running the stage again.
type StageResult struct {
	Stage      runstate.Stage     `json:"stage"`
	Checkpoint *Checkpoint        `json:"checkpoint,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Batch      string             `json:"batch,omitempty"`
	Snapshot   string             `json:"snapshot,omitempty"`
	// Seconds is the time spent computing (training, sampling, judging)
	// and WaitSeconds waiting for labels, over all attempts (an attempt
	// that died counts up to its last heartbeat).
	Seconds     float64 `json:"seconds"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
	// ResumedFrom is the step of the committed checkpoint the finishing
	// attempt continued from (0: it started from scratch).
	ResumedFrom int64 `json:"resumed_from"`
	// Reused: the stage had finished in an earlier execution of the run
	// with the same settings; nothing was done now.
	Reused bool `json:"reused,omitempty"`
	// Execution is the workflow execution (run id) that finished it.
	Execution string `json:"execution,omitempty"`
	// Trainer is "exec" for a stage an external trainer ran (Seconds then
	// counts from its processes' start to their exit, and the built-in
	// work after them, such as scoring the snapshot), "" when built in.
	Trainer string `json:"trainer,omitempty"`
}

// RunInput is the input of BeginRun.
type RunInput struct {
	Spec runspec.Spec `json:"spec"`
}

// EndRunInput is the input of EndRun.
type EndRunInput struct {
	Run    string          `json:"run"`
	Status runstate.Status `json:"status"`
	Report json.RawMessage `json:"report,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// StageStatusInput is the input of RecordStage.
type StageStatusInput struct {
	Run    string
	Stage  runstate.Stage
	Status runstate.Status
	Error  string
}

// Checkpoint names a committed checkpoint in payloads: where it is and the
// SHA-256 of its manifest, which covers every file.
type Checkpoint struct {
	Run    string         `json:"run"`
	Stage  runstate.Stage `json:"stage"`
	Step   int64          `json:"step"`
	SHA256 string         `json:"sha256"`
}

// Key is the checkpoint's folder in the object store.
func (c Checkpoint) Key() string { return checkpoint.StageKey(c.Run, string(c.Stage), c.Step) }

// PreflightInput is the input of Preflight.
type PreflightInput struct {
	// ProbeKey is where the object-store probe is written and removed.
	ProbeKey string
}

// PreflightResult says what the worker could reach.
type PreflightResult struct {
	Worker        string `json:"worker"` // host name of the worker that ran it
	TaskQueue     string `json:"task_queue"`
	SchemaVersion int32  `json:"schema_version"`
	ObjectBytes   int    `json:"object_bytes"`
}
