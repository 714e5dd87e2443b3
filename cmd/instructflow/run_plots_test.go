package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/storage/postgres"
)

// TestRunPlots: the charts of the stages that recorded metrics are drawn
// (and no others), a run with none says so, and an unknown run is bad
// input.
func TestRunPlots(t *testing.T) {
	dbURL := testenv.FreshDatabase(t)
	t.Setenv("INSTRUCTFLOW_POSTGRES_URL", dbURL)
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, run := range []string{"r1", "r2"} {
		if err := db.CreateRun(ctx, run, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.BeginStage(ctx, "r1", "sft", "x"); err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= 3; step++ {
		if err := db.RecordMetrics(ctx, "r1", "sft", step, map[string]float64{"loss": 3 - float64(step)/2}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	out, _, err := runCLI(t, "run", "plots", "r1", "-o", dir)
	want := filepath.Join(dir, "sft-loss.svg")
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("plots: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(want); err != nil || !strings.Contains(string(b), "SFT: cross-entropy") {
		t.Errorf("the SVG: %v %.200s", err, b)
	}
	if out, _, err := runCLI(t, "run", "plots", "r2", "-o", dir); err != nil || !strings.Contains(out, "run r2 has recorded no metrics to plot yet") {
		t.Errorf("a run without metrics: %v %s", err, out)
	}
	if _, _, err := runCLI(t, "run", "plots", "nope"); err == nil || !strings.Contains(err.Error(), `no run "nope"`) {
		t.Errorf("an unknown run: %v", err)
	}
	if _, _, err := runCLI(t, "run", "plots", "r1", "--format", "gif"); err == nil || !strings.Contains(err.Error(), "use svg or png") {
		t.Errorf("a gif: %v", err)
	}
}
