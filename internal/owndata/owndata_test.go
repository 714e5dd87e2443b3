package owndata

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tasks"
)

const runSpec = `preset: %[2]s
seed: 5
data: {sft: %[1]s-sft, prompts: %[1]s-prompts, task: strops}
labels: {collect: false, snapshot: %[1]s-pairs, deadline: 30m}
eval: {samples: 2, human: true}
retry: {heartbeat_timeout: 10s, max_interval: 5s}
`

// writeJSONL writes one JSON object a line.
func writeJSONL(t *testing.T, path string, rows []any) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// demoFiles writes the demo task as a user's files, one per split: the
// demonstrations (prompt-completion), the prompts without one (prompt),
// and pairs ranked by the simulated labelers (pairwise).
func demoFiles(t *testing.T, dir string, n int) map[string]string {
	d := tasks.NewData(tasks.DataSeed, n, tasks.DemoSlips)
	files := map[string]string{}
	add := func(name string, rows []any) {
		files[name] = filepath.Join(dir, name+".jsonl")
		writeJSONL(t, files[name], rows)
	}
	for split, demos := range map[string][]stage.Example{"train": d.TrainDemos, "heldout": d.HeldoutDemos} {
		var rows []any
		for _, ex := range demos {
			rows = append(rows, map[string]string{"prompt": ex.Prompt, "completion": ex.Response})
		}
		add("demos-"+split, rows)
	}
	var prompts []any
	for _, ex := range d.Heldout {
		prompts = append(prompts, map[string]string{"prompt": ex.Prompt})
	}
	add("prompts-heldout", prompts)
	prompts = nil
	for _, ex := range d.Train {
		prompts = append(prompts, map[string]string{"prompt": ex.Prompt})
	}
	add("prompts-train", prompts)
	var pairs []any
	for _, r := range tasks.Simulate(7, append(append([]tasks.Example{}, d.Train...), d.Heldout[:len(d.Heldout)/2]...), tasks.Panel(), 2, 1) {
		if r.Ranks[0] == r.Ranks[1] {
			continue
		}
		c, rj := r.Responses[0], r.Responses[1]
		if r.Ranks[1] < r.Ranks[0] {
			c, rj = rj, c
		}
		pairs = append(pairs, map[string]string{"prompt": r.Prompt, "chosen": c, "rejected": rj, "labeler": r.Labeler})
	}
	add("pairs", pairs)
	return files
}

var presetFlag = flag.String("preset", "micro", "the run's preset: micro (2,000 prompts, seconds) or tiny (5,000, the demo run's, minutes)")

// TestRunOnImportedData runs the micro preset on 2,000 prompts; with
// `-args -preset tiny`, the demo run's tiny preset on 5,000 (minutes on
// 2 cores), where PPO clearly beats SFT.
func TestRunOnImportedData(t *testing.T) {
	preset, prompts := "micro", 2000
	if *presetFlag == "tiny" {
		preset, prompts = "tiny", tasks.DataPrompts
	}
	c := testenv.NewCLI(t, "owndata")
	cli := c.Run
	name := "demo" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")
	files := demoFiles(t, t.TempDir(), prompts)
	for _, split := range []string{"train", "heldout"} {
		cli("data", "import", files["demos-"+split], "--dataset", name+"-sft", "--format", "prompt-completion", "--split", split)
		cli("data", "import", files["prompts-"+split], "--dataset", name+"-prompts", "--format", "prompt", "--split", split)
	}
	cli("labels", "import", files["pairs"], "--format", "pairwise")
	cli("labels", "snapshot", name+"-pairs")

	c.Start("worker.log", "worker")
	// The human evaluation's batch is answered by 'labels simulate' with
	// the demo task's reliable simulated labelers only (--unreliable 0):
	// people who judge as the gold judge does, up to their noise, so that
	// their win rate measures what the gold judge's does. (The unreliable
	// ones would pull it towards one half.)
	run := "own-" + name
	c.Start("labeler.log", "labels", "simulate", "--run", run, "--unreliable", "0", "--wait", "1h")

	specFile := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(specFile, []byte(fmt.Sprintf(runSpec, name, preset)), 0o644); err != nil {
		t.Fatal(err)
	}
	var rep control.Report
	if err := json.Unmarshal([]byte(cli("run", "start", "-f", specFile, "--set", "id="+run, "--wait", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "succeeded" {
		t.Fatalf("run: %s %s", rep.Status, rep.Error)
	}
	s := rep.Summary
	t.Logf("summary: %v", s)
	for _, k := range []string{"rm_win_rate", "rm_win_low", "rm_win_high", "human_win_rate", "human_win_low", "human_win_high", "win_rate", "kl"} {
		if _, ok := s[k]; !ok {
			t.Fatalf("the report has no %s: %v", k, s)
		}
	}
	for _, j := range []string{"rm_", "human_", ""} {
		if lo, v, hi := s[j+"win_low"], s[j+"win_rate"], s[j+"win_high"]; !(lo <= v && v <= hi && hi-lo > 0 && hi-lo < 0.1) {
			t.Errorf("%swin_rate %.3f with interval %.3f-%.3f", j, v, lo, hi)
		}
	}
	// People (here the simulated labelers) agree with the gold judge: its
	// win rate lies in the human win rate's interval.
	if g := s["win_rate"]; g < s["human_win_low"] || g > s["human_win_high"] || math.IsNaN(g) {
		t.Errorf("gold win rate %.3f outside the human interval %.3f-%.3f", g, s["human_win_low"], s["human_win_high"])
	}
	if s["human_labels"]+s["human_identical"] != s["samples"] {
		t.Errorf("%v labels + %v identical pairs, want one per sample (%v)", s["human_labels"], s["human_identical"], s["samples"])
	}
	out := cli("run", "report", run, "--samples", "3")
	for _, want := range []string{"under the run's reward model: win rate", "by people (eval.human): win rate", "under the task's gold judge", "sample 3\n", "rm:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
}
