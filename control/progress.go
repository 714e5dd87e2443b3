package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

// Progress asks a running run for its progress, with the running stage's
// step, metrics, attempt and ETA from its latest heartbeat (the workflow
// itself gets no progress: that would grow its history); live=false when
// no execution of the run is running. An error with live=true means the run
// runs but no worker answered the query.
func (c *Client) Progress(ctx context.Context, run string) (p workflows.Progress, live bool, err error) {
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, run, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("run %s: %w", run, err)
	}
	if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return p, false, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := c.Temporal.QueryWorkflow(qctx, run, "", workflows.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	if err != nil {
		return p, true, fmt.Errorf("run %s: no worker answered the progress query (is `instructflow worker` running on task queue %q?): %w", run, c.Config.Temporal.TaskQueue, err)
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityId() != run+"/"+string(p.Stage) || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var hb activities.Heartbeat
		if converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &hb) == nil && hb.Step >= p.Step {
			p.Step, p.Total, p.Metrics, p.Attempt = hb.Step, hb.Total, hb.Metrics, pa.GetAttempt()
			if p.Status == runstate.Running {
				p.ETASeconds = hb.ETASeconds()
			}
		}
	}
	return p, true, nil
}

// Watch calls see (when not nil) with the run's progress every second, or
// with the error of an unanswered query, until no execution of the run is
// running or ctx ends.
func (c *Client) Watch(ctx context.Context, run string, see func(workflows.Progress, error)) error {
	for {
		p, live, err := c.Progress(ctx, run)
		if !live {
			return err
		}
		if see != nil {
			see(p, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Status is a run as `run status` shows it: its records and, while it
// runs, its live progress.
type Status struct {
	Run      postgres.Run       `json:"run"`
	Live     bool               `json:"live"`
	Progress workflows.Progress `json:"progress"`
	Stages   []postgres.Stage   `json:"stages"`
	// Warning says why a run that runs shows only its records (no worker
	// answered its progress query).
	Warning string `json:"warning,omitempty"`
}

// Status reads a run's records and merges its live progress.
func (c *Client) Status(ctx context.Context, run string) (Status, error) {
	rec, err := c.DB.GetRun(ctx, run)
	if err != nil {
		return Status{}, fmt.Errorf("run status: %w", err)
	}
	st := Status{Run: rec}
	p, live, perr := c.Progress(ctx, rec.ID)
	switch {
	case perr != nil && !live:
		return Status{}, perr
	case perr != nil: // the run runs, but its workflow did not answer: show the records
		st.Warning = perr.Error()
	default:
		st.Progress, st.Live = p, live
	}
	if st.Stages, err = c.DB.Stages(ctx, rec.ID); err != nil {
		return Status{}, err
	}
	return st, nil
}
