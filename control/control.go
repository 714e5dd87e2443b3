// Package control is run control: starting, resuming, following, updating
// and reporting pipeline runs over Postgres and Temporal. The CLI, the tests
// and the web server share it, so a policy (what a resume may change, how
// live progress merges with the records) is written once; presentation is
// the caller's.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

// Client controls runs: the configuration, Postgres and Temporal.
type Client struct {
	Config   config.Config
	DB       *postgres.DB
	Temporal client.Client
}

// Dial connects to the configuration's Postgres and Temporal.
func Dial(ctx context.Context, cfg config.Config) (*Client, error) {
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, err
	}
	tc, err := DialTemporal(ctx, cfg.Temporal, nil)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Client{Config: cfg, DB: db, Temporal: tc}, nil
}

// DialLazy is Dial for a server that must answer while Temporal is away
// (the labeling app): Temporal is connected at its first use, and a call
// then fails as it would have (errkind.Unavailable) without taking the
// rest down.
func DialLazy(ctx context.Context, cfg config.Config) (*Client, error) {
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, err
	}
	tc, err := client.NewLazyClient(client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace,
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("temporal: %s: %w", cfg.Temporal.Address, err)
	}
	return &Client{Config: cfg, DB: db, Temporal: tc}, nil
}

// Close closes both connections.
func (c *Client) Close() { c.Temporal.Close(); c.DB.Close() }

// DialTemporal connects to the Temporal frontend; one that does not answer
// is errkind.Unavailable.
// A nil logger drops the SDK's own log lines (failures come back as errors).
func DialTemporal(ctx context.Context, cfg config.Temporal, logger tlog.Logger) (client.Client, error) {
	if logger == nil {
		logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.DialContext(dctx, client.Options{HostPort: cfg.Address, Namespace: cfg.Namespace, Logger: logger})
	if err != nil {
		var down *serviceerror.Unavailable
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &down) {
			err = fmt.Errorf("%w: %w", errkind.Unavailable, err)
		}
		return nil, fmt.Errorf("temporal: connect to %s: %w", cfg.Address, err)
	}
	return c, nil
}

// Start records a new run and starts its workflow. A spec without an id
// gets run-<UTC time>.
func (c *Client) Start(ctx context.Context, spec runspec.Spec) (runspec.Spec, error) {
	if spec.ID == "" {
		spec.ID = "run-" + time.Now().UTC().Format("20060102-150405")
	}
	if err := c.resolveBase(ctx, &spec); err != nil {
		return spec, err
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	switch _, err := c.DB.GetRun(ctx, spec.ID); {
	case err == nil:
		return spec, fmt.Errorf("run start: run %s exists; resume it with `instructflow run resume %s` or choose another id", spec.ID, spec.ID)
	case !errors.Is(err, errkind.NotFound):
		return spec, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return spec, err
	}
	if err := c.DB.CreateRun(ctx, spec.ID, data); err != nil {
		return spec, err
	}
	if err := c.DB.SetRunStatus(ctx, spec.ID, string(runstate.Pending), nil, ""); err != nil {
		return spec, err
	}
	return spec, c.execute(ctx, workflows.PipelineInput{Spec: spec})
}

// resolveBase fills a spec's base model in from its record: the manifest
// hash (refusing a given one that differs) and the shape; LoRA settings
// stay the spec's.
func (c *Client) resolveBase(ctx context.Context, spec *runspec.Spec) error {
	m := &spec.Model
	if m.Base == "" {
		return nil
	}
	rec, err := c.DB.GetModel(ctx, m.Base)
	if errors.Is(err, errkind.NotFound) {
		return errkind.BadInputf("run spec: model.base: no model %q was imported; import it with `instructflow model import %s DIR` (see `instructflow model list`)", m.Base, m.Base)
	}
	if err != nil {
		return err
	}
	if m.BaseSHA256 != "" && m.BaseSHA256 != rec.ManifestSHA {
		return errkind.BadInputf("run spec: model.base_sha256 %s is not the hash of model %s (%s); remove model.base_sha256 or name the model that has it", m.BaseSHA256, m.Base, rec.ManifestSHA)
	}
	cfg, err := model.ParseConfig(rec.Config)
	if err != nil {
		return fmt.Errorf("run spec: model.base %s: stored config: %w", m.Base, err)
	}
	cfg.LoRARank, cfg.LoRAAlpha = m.LoRARank, m.LoRAAlpha
	m.Config, m.BaseSHA256 = cfg, rec.ManifestSHA
	return nil
}

func (c *Client) execute(ctx context.Context, in workflows.PipelineInput) error {
	_, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    in.Spec.ID,
		TaskQueue:             c.Config.Temporal.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.Pipeline, in)
	if err != nil {
		return fmt.Errorf("run %s: start workflow: %w", in.Spec.ID, err)
	}
	return nil
}

// Resume starts a new execution of a run that does not run, with sets
// applied to its stored spec: finished stages are reused, the unfinished
// one continues from its last checkpoint. It refuses a change that would
// alter a finished stage's result or a sampled batch, and refuses when it
// cannot tell whether the run still runs. Postgres is written only once
// the new execution started (postgres.DB.ResumeRun).
func (c *Client) Resume(ctx context.Context, id string, sets []string) (runspec.Spec, error) {
	rec, err := c.DB.GetRun(ctx, id)
	if errors.Is(err, errkind.NotFound) {
		return runspec.Spec{}, fmt.Errorf("run resume: no run %s (list them with `instructflow run list`)", id)
	}
	if err != nil {
		return runspec.Spec{}, err
	}
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, rec.ID, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf): // no execution Temporal knows of (its history expired): none runs
	case err != nil:
		return runspec.Spec{}, fmt.Errorf("run resume: cannot tell whether run %s still runs, so it was not started again: %w", rec.ID, err)
	case d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return runspec.Spec{}, fmt.Errorf("run resume: run %s is still running; cancel it first or watch it", rec.ID)
	}
	var old runspec.Spec
	if err := json.Unmarshal(rec.Spec, &old); err != nil {
		return runspec.Spec{}, fmt.Errorf("run resume: stored spec of %s: %w", rec.ID, err)
	}
	spec := old
	if err := spec.Set(sets); err != nil {
		return runspec.Spec{}, err
	}
	if spec.ID != old.ID {
		return runspec.Spec{}, errors.New("run resume: the run id cannot change; start a new run instead")
	}
	if spec.Model.Base != old.Model.Base {
		spec.Model.BaseSHA256 = ""
	}
	if err := c.resolveBase(ctx, &spec); err != nil {
		return runspec.Spec{}, err
	}
	if err := spec.Validate(); err != nil {
		return runspec.Spec{}, err
	}
	stages, err := c.DB.Stages(ctx, rec.ID)
	if err != nil {
		return runspec.Spec{}, err
	}
	for _, key := range runspec.Changed(old, spec) {
		first := runspec.FirstAffected(key)
		for _, st := range stages {
			name, done := runstate.Stage(st.Name), runstate.Status(st.Status) == runstate.Succeeded
			if first != "" && done && slices.Index(runspec.Stages, name) >= slices.Index(runspec.Stages, first) {
				return runspec.Spec{}, fmt.Errorf("run resume: %s changes the result of stage %s, which already finished; start a new run (`run start`) to change it", key, st.Name)
			}
			if name == runstate.Labels && slices.Contains(runspec.SamplingKeys, key) {
				return runspec.Spec{}, fmt.Errorf("run resume: the labeling batch was already sampled with the old %s; start a new run to sample again", key)
			}
		}
	}
	approved := false
	for _, st := range stages {
		approved = approved || runstate.Stage(st.Name) == runstate.Gate && runstate.Status(st.Status) == runstate.Succeeded
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return runspec.Spec{}, err
	}
	in := workflows.PipelineInput{Spec: spec, GateApproved: approved}
	if err := c.DB.ResumeRun(ctx, spec.ID, data, func(ctx context.Context) error { return c.execute(ctx, in) }); err != nil {
		return runspec.Spec{}, err
	}
	return spec, nil
}

// Cancel cancels a run and waits until its execution ended; it returns the
// run's record then.
func (c *Client) Cancel(ctx context.Context, run string) (postgres.Run, error) {
	if err := c.Temporal.CancelWorkflow(ctx, run, ""); err != nil {
		return postgres.Run{}, fmt.Errorf("run cancel %s: %w", run, err)
	}
	if err := c.Watch(ctx, run, nil); err != nil {
		return postgres.Run{}, err
	}
	return c.DB.GetRun(ctx, run)
}

// Update sends one of the workflow's updates (workflows.PauseUpdate,
// UnpauseUpdate, ApproveUpdate) and returns the progress it answers.
func (c *Client) Update(ctx context.Context, run, update string) (workflows.Progress, error) {
	var p workflows.Progress
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: run, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		return p, fmt.Errorf("run %s %s: %w", update, run, err)
	}
	if err := h.Get(ctx, &p); err != nil {
		return p, fmt.Errorf("run %s %s: %w", update, run, err)
	}
	return p, nil
}

// UILink is the run's page in the Temporal Web UI.
func (c *Client) UILink(run string) string {
	t := c.Config.Temporal
	host := t.Address
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	return fmt.Sprintf("http://%s:%d/namespaces/%s/workflows/%s", host, t.UIPort, t.Namespace, run)
}
