package demo

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/instructflow/instructflow/stage"
)

func envf(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

func TestExp(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RM.LR = float32(envf("RMLR", 1e-3))
	cfg.RM.Steps = int(envf("RMSTEPS", 600))
	cfg.RM.BatchSize = int(envf("RMB", 16))
	cfg.RMPrompts = int(envf("RMP", 2000))
	cfg.Model.Width = int(envf("WIDTH", 64))
	cfg.Model.Layers = int(envf("LAYERS", 3))
	cfg.PPO.PolicyLR = float32(envf("PLR", 3e-4))
	cfg.PPO.KLCoef = float32(envf("BETA", 0.05))
	cfg.PPO.EntropyCoef = float32(envf("ENT", 0))
	cfg.PPO.RolloutBatch = int(envf("ROLL", 64))
	cfg.PPO.MiniBatch = int(envf("MB", 16))
	cfg.PPO.Epochs = int(envf("EPOCHS", 4))
	cfg.K = int(envf("K", 4))
	cfg.PPO.Lambda = float32(envf("LAMBDA", 0.95))
	cfg.LabelRounds = int(envf("ROUNDS", 1))
	cfg.PPO.Iterations = int(envf("PPOIT", 120))
	cfg.PPO.TargetKL = float32(envf("TKL", 4))
	dir := t.TempDir()
	if d := os.Getenv("DIR"); d != "" {
		dir = d
		os.RemoveAll(d + "/ppo")
	}
	rep, err := Run(context.Background(), cfg, dir, func(name string, r stage.Report) {
		if (name == "ppo" && r.Step%20 == 0) || r.Step == r.Total || (name == "rm" && r.Step%200 == 0) {
			fmt.Println(name, r.Step, r.Metrics)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(rep)
}
