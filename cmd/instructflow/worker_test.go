package main

import (
	"testing"
	"time"
)

// TestWorkerLimitsFromConfig: worker.max_concurrent_stages and
// worker.stall_timeout, set as a user would, reach the worker's activities
// (default one computing stage at a time).
func TestWorkerLimitsFromConfig(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args   []string
		stages int
		stall  time.Duration
	}{
		{nil, 1, 30 * time.Minute},
		{[]string{"--worker-max-concurrent-stages", "3", "--worker-stall-timeout", "2h"}, 3, 2 * time.Hour},
	} {
		a := &app{flags: newRootCmd()}
		if err := a.flags.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := a.config()
		if err != nil {
			t.Fatal(err)
		}
		acts := newActivities(cfg, nil, nil, nil)
		if cap(acts.Slots) != tc.stages || acts.StallTimeout != tc.stall {
			t.Errorf("%v: %d stages at once, stall %s; want %d and %s", tc.args, cap(acts.Slots), acts.StallTimeout, tc.stages, tc.stall)
		}
	}
	t.Setenv("INSTRUCTFLOW_WORKER_STALL_TIMEOUT", "45m")
	a := &app{flags: newRootCmd()}
	if cfg, err := a.config(); err != nil || cfg.Worker.StallTimeout != 45*time.Minute {
		t.Errorf("INSTRUCTFLOW_WORKER_STALL_TIMEOUT=45m: %v, %v", cfg.Worker.StallTimeout, err)
	}
	t.Setenv("INSTRUCTFLOW_WORKER_MAX_CONCURRENT_STAGES", "0")
	if _, err := a.config(); err == nil {
		t.Error("worker.max_concurrent_stages 0 accepted")
	}
}
