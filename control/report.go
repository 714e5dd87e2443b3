package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

// Report is a run's report: its records, the pipeline's own report (time
// split, orchestration overhead) and the figures users read first.
type Report struct {
	Run      string             `json:"run"`
	Status   string             `json:"status"`
	Error    string             `json:"error,omitempty"`
	Pipeline *workflows.Report  `json:"pipeline,omitempty"`
	Stages   []postgres.Stage   `json:"stages"`
	Summary  map[string]float64 `json:"summary"`
	UI       string             `json:"temporal_ui"`
	Bucket   string             `json:"bucket"`
	// Results are the stages' results, decoded from Stages[].Result.
	Results map[string]activities.StageResult `json:"-"`
}

// Report assembles a run's report from its records.
func (c *Client) Report(ctx context.Context, run string) (Report, error) {
	rec, err := c.DB.GetRun(ctx, run)
	if err != nil {
		return Report{}, fmt.Errorf("run report: %w", err)
	}
	r := Report{Run: rec.ID, Status: rec.Status, Error: rec.Error, UI: c.UILink(rec.ID),
		Bucket:  c.Config.S3.Endpoint + "/" + c.Config.S3.Bucket,
		Summary: map[string]float64{}, Results: map[string]activities.StageResult{}}
	if len(rec.Result) > 0 {
		r.Pipeline = &workflows.Report{}
		if err := json.Unmarshal(rec.Result, r.Pipeline); err != nil {
			return r, fmt.Errorf("run %s: stored report: %w", rec.ID, err)
		}
		r.Summary["overhead_share"] = r.Pipeline.OverheadShare
		r.Summary["wall_seconds"] = r.Pipeline.WallSeconds
	}
	if r.Stages, err = c.DB.Stages(ctx, rec.ID); err != nil {
		return r, err
	}
	for _, st := range r.Stages {
		var res activities.StageResult
		if len(st.Result) == 0 || json.Unmarshal(st.Result, &res) != nil {
			continue
		}
		r.Results[st.Name] = res
		switch runstate.Stage(st.Name) {
		case runstate.RM:
			r.Summary["rm_accuracy"] = res.Metrics["accuracy"]
		case runstate.Eval:
			for _, k := range []string{"win_rate", "kl", "sft_gold", "ppo_gold"} {
				r.Summary[k] = res.Metrics[k]
			}
		}
	}
	return r, nil
}
