// Package plots draws a run's training curves (SVG or PNG) from the
// metrics its stages recorded, for `instructflow run plots` and the
// dashboard: SFT
// train and held-out loss; RM loss and held-out accuracy; PPO score, KL,
// beta, clip fraction, entropy and response length per iteration.
package plots

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/instructflow/instructflow/runstate"
)

// Metric is one recorded value of a stage (storage/postgres.Metric
// converts to it).
type Metric struct {
	Step  int64
	Name  string
	Value float64
}

// Chart is one plot of a stage's metrics.
type Chart struct {
	Stage   string   // the stage whose metrics it draws
	Name    string   // file-name part: <stage>-<name>.svg
	Title   string   // above the plot
	X, Y    string   // axis labels
	Metrics []string // the curves, each a metric name
}

// Charts are the plots of a run, in the order they are shown.
var Charts = []Chart{
	{Stage: string(runstate.SFT), Name: "loss", Title: "SFT: cross-entropy", X: "step", Y: "nats per target token", Metrics: []string{"loss", "heldout_loss"}},
	{Stage: string(runstate.RM), Name: "loss", Title: "Reward model: pairwise loss", X: "step", Y: "nats per pair", Metrics: []string{"loss", "heldout_loss"}},
	{Stage: string(runstate.RM), Name: "accuracy", Title: "Reward model: held-out accuracy", X: "step", Y: "pairs ordered as labeled", Metrics: []string{"heldout_accuracy"}},
	{Stage: string(runstate.PPO), Name: "score", Title: "PPO: reward-model score", X: "iteration", Y: "mean score", Metrics: []string{"score_mean"}},
	{Stage: string(runstate.PPO), Name: "kl", Title: "PPO: KL to SFT and its coefficient", X: "iteration", Y: "nats per response / beta", Metrics: []string{"kl", "beta"}},
	{Stage: string(runstate.PPO), Name: "clip", Title: "PPO: clipped share of policy ratios", X: "iteration", Y: "share of tokens", Metrics: []string{"clip_fraction"}},
	{Stage: string(runstate.PPO), Name: "entropy", Title: "PPO: policy entropy", X: "iteration", Y: "nats per token", Metrics: []string{"entropy"}},
	{Stage: string(runstate.PPO), Name: "length", Title: "PPO: response length", X: "iteration", Y: "tokens", Metrics: []string{"response_length"}},
}

// Width and Height are the size of a drawn chart.
const Width, Height = 6 * vg.Inch, 3.5 * vg.Inch

// Formats are the image formats Draw writes.
var Formats = []string{"svg", "png"}

// Draw draws c from ms, one stage's metrics, as an image of format (one of
// Formats); ok is false when none of its metrics was recorded (a stage not
// run yet, or one that does not report it), and nothing is drawn.
func Draw(c Chart, ms []Metric, format string) (img []byte, ok bool, err error) {
	if !slices.Contains(Formats, format) {
		return nil, false, fmt.Errorf("plots: format %q: use one of %v", format, Formats)
	}
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text, p.Y.Label.Text = c.X, c.Y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for i, name := range c.Metrics {
		var pts plotter.XYs
		skipped := 0
		for _, m := range ms {
			switch {
			case m.Name != name:
			case math.IsNaN(m.Value) || math.IsInf(m.Value, 0):
				skipped++ // a diverged loss: the curve shows the rest, the legend says so
			default:
				pts = append(pts, plotter.XY{X: float64(m.Step), Y: m.Value})
			}
		}
		label := name
		if skipped > 0 {
			label = fmt.Sprintf("%s (%d non-finite left out)", name, skipped)
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortStableFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, false, fmt.Errorf("plots: %s %s: %w", c.Stage, name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		if len(pts) == 1 { // one point draws no line: mark it
			dot, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, false, fmt.Errorf("plots: %s %s: %w", c.Stage, name, err)
			}
			dot.Color = line.Color
			p.Add(dot)
		}
		p.Legend.Add(label, line)
		ok = true
	}
	if !ok {
		return nil, false, nil
	}
	w, err := p.WriterTo(Width, Height, format)
	if err != nil {
		return nil, false, fmt.Errorf("plots: %s %s: %w", c.Stage, c.Name, err)
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, false, fmt.Errorf("plots: %s %s: %w", c.Stage, c.Name, err)
	}
	return b.Bytes(), true, nil
}

// Image is one drawn chart of a run.
type Image struct {
	Chart Chart
	Data  []byte
}

// DrawRun draws every chart of a run whose metrics were recorded, in
// Charts' order; metrics reads one stage's metrics (once per stage).
func DrawRun(metrics func(stage string) ([]Metric, error), format string) ([]Image, error) {
	byStage := map[string][]Metric{}
	var out []Image
	for _, c := range Charts {
		ms, ok := byStage[c.Stage]
		if !ok {
			var err error
			if ms, err = metrics(c.Stage); err != nil {
				return nil, err
			}
			byStage[c.Stage] = ms
		}
		img, drawn, err := Draw(c, ms, format)
		if err != nil {
			return nil, err
		}
		if drawn {
			out = append(out, Image{Chart: c, Data: img})
		}
	}
	return out, nil
}

// Of converts stored metric records (storage/postgres.Metric) to Metric.
func Of[T ~struct {
	Step  int64
	Name  string
	Value float64
}](records []T) []Metric {
	out := make([]Metric, len(records))
	for i, r := range records {
		out[i] = Metric(r)
	}
	return out
}
