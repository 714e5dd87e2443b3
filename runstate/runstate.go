// Package runstate is the vocabulary of a run: the names of its stages, in
// the order a run goes through them, and the statuses a run and its stages
// take. The workflow, the activities, the CLI, the report and the SQL CHECK
// constraints all use this one table (a test compares the constraints in
// the database with it).
package runstate

// Stage names a stage of the pipeline, as it appears in stage records,
// object keys (runs/<run>/<stage>/), activity ids and the report.
type Stage string

// The stages.
const (
	SFT      Stage = "sft"
	Labels   Stage = "labels"   // sample K responses per prompt, wait for people to rank them
	Snapshot Stage = "snapshot" // freeze the comparisons the reward model trains on
	RM       Stage = "rm"
	Gate     Stage = "gate" // no activity: PPO waits here for approval below the RM threshold
	PPO      Stage = "ppo"
	Eval     Stage = "eval"
)

// Stages are all stages in the order a run goes through them.
var Stages = []Stage{SFT, Labels, Snapshot, RM, Gate, PPO, Eval}

// Status is where a run or a stage is.
type Status string

// The statuses.
const (
	Pending   Status = "pending"
	Running   Status = "running"
	Waiting   Status = "waiting" // for labels, or for approval at the gate
	Paused    Status = "paused"  // a run only, while `run pause` holds it (workflow state, not stored)
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	Skipped   Status = "skipped" // a stage only
)

// WaitingForApproval is how a run held at its gate shows in `run status`
// (stored as Waiting).
const WaitingForApproval Status = "waiting for approval"

// StageStatuses are the statuses a stage record may hold; RunStatuses those
// of a run record. They are the stages and runs tables' CHECK constraints.
var (
	StageStatuses = []Status{Pending, Running, Waiting, Succeeded, Failed, Skipped, Cancelled}
	RunStatuses   = []Status{Pending, Running, Waiting, Succeeded, Failed, Cancelled}
)
