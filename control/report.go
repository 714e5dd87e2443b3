package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/runspec"
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
	// Base is the imported model the run started from (none: fresh weights).
	Base *BaseModel `json:"base_model,omitempty"`
	// Results are the stages' results, decoded from Stages[].Result.
	Results map[string]activities.StageResult `json:"-"`
}

// BaseModel names the imported model a run started from.
type BaseModel struct {
	Name        string `json:"name"`
	ManifestSHA string `json:"manifest_sha256"`
	Source      string `json:"source"`
}

// BaseOf returns the base model of a stored run spec (nil for none).
func BaseOf(spec []byte) (*BaseModel, error) {
	var s runspec.Spec
	if err := json.Unmarshal(spec, &s); err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	if s.Model.Base == "" {
		return nil, nil
	}
	return &BaseModel{Name: s.Model.Base, ManifestSHA: s.Model.BaseSHA256}, nil
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
	if r.Base, err = BaseOf(rec.Spec); err != nil {
		return r, fmt.Errorf("run %s: %w", rec.ID, err)
	}
	if r.Base != nil {
		if m, err := c.DB.GetModel(ctx, r.Base.Name); err == nil {
			r.Base.Source = m.Source
		}
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
		if wall, ok := r.stageWall(runstate.Stage(st.Name)); ok && res.Trainer != "" && !res.Reused && wall > 0 {
			over := max(0, wall-res.Seconds)
			r.Summary[st.Name+"_overhead_seconds"], r.Summary[st.Name+"_overhead_share"] = over, over/wall
		}
		switch runstate.Stage(st.Name) {
		case runstate.RM:
			r.Summary["rm_accuracy"] = res.Metrics["accuracy"]
			if n, ok := res.Metrics["heldout_pairs"]; ok {
				r.Summary["rm_heldout_pairs"] = n
			}
		case runstate.Eval:
			for k, v := range res.Metrics {
				r.Summary[k] = v
			}
		}
	}
	return r, nil
}

// stageWall is a stage's wall time, from the pipeline's report (ok false
// while the run has none, or the stage did not finish).
func (r Report) stageWall(name runstate.Stage) (float64, bool) {
	if r.Pipeline == nil {
		return 0, false
	}
	for _, ws := range r.Pipeline.Stages {
		if ws.Name == name && !ws.Started.IsZero() && !ws.Finished.IsZero() {
			return ws.Finished.Sub(ws.Started).Seconds(), true
		}
	}
	return 0, false
}
