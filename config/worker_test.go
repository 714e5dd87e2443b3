package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestWorkerLimits(t *testing.T) {
	if d := Default().Worker; d.MaxConcurrentStages != 1 || d.StallTimeout != 30*time.Minute {
		t.Errorf("defaults %+v, want 1 stage at a time and a 30m stall timeout", d)
	}
	for _, tc := range []struct {
		stages int
		stall  time.Duration
		want   string
	}{
		{0, time.Hour, "worker.max_concurrent_stages"},
		{-2, time.Hour, "INSTRUCTFLOW_WORKER_MAX_CONCURRENT_STAGES"},
		{1, 0, "worker.stall_timeout"},
		{1, 10 * time.Second, "use a duration of 1m or more"},
	} {
		c := Default()
		c.Worker.MaxConcurrentStages, c.Worker.StallTimeout = tc.stages, tc.stall
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d stages, stall %s: error %v, want one naming %q", tc.stages, tc.stall, err, tc.want)
		}
	}
	b, err := json.Marshal(Default().Worker)
	if err != nil || !strings.Contains(string(b), `"stall_timeout":"30m0s"`) || !strings.Contains(string(b), `"max_concurrent_stages":1`) {
		t.Errorf("worker config as JSON (config show): %s, %v", b, err)
	}
}
