package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/instructflow/instructflow/checkpoint/blobtest"
	"github.com/instructflow/instructflow/stage"
)

func TestProgressLines(t *testing.T) {
	for line, ok := range map[string]bool{
		`{"step": 3, "total": 10, "metrics": {"loss": 1.5}}`: true,
		`{"step": 0}`:                   true,
		`{"total": 10}`:                 false, // no step
		`INFO starting`:                 false,
		`{"step": "three"}`:             false,
		`{"step": 3, "checkpoint": "x"`: false,
		``:                              false,
	} {
		if _, got := progressOf([]byte(line)); got != ok {
			t.Errorf("%q: progress line %v, want %v", line, got, ok)
		}
	}
}

// runScript runs a shell script as an external trainer through the real
// stage frame, with a committed checkpoint at runs/stall/sft/2/, and
// returns the process's outcome.
func runScript(t *testing.T, script string, heartbeat time.Duration) (*trainerProcess, error) {
	t.Helper()
	blobs := &blobtest.Memory{}
	a := &Activities{DB: &memoryDB{}, Objects: blobs, StallTimeout: time.Minute, beatEvery: 10 * time.Millisecond}
	var p *trainerProcess
	var runErr error
	_, _ = runFake(t, a, 20*time.Second, func(ctx context.Context, tr *tracker) error {
		if _, err := tr.sink.Save(ctx, 2, []stage.File{{Name: "model.safetensors", Data: []byte("w")}}); err != nil {
			t.Fatal(err)
		}
		p = &trainerProcess{t: tr, heartbeat: heartbeat, grace: 300 * time.Millisecond, metrics: map[string]float64{}}
		runErr = p.run(ctx, []string{"sh", "-c", script}, os.Environ())
		return runErr
	})
	return p, runErr
}

func TestTrainerProcess(t *testing.T) {
	t.Run("finishes", func(t *testing.T) {
		p, err := runScript(t, `echo banner; echo '{"step": 1, "total": 2, "metrics": {"loss": 2}}'
echo '{"step": 2, "total": 2, "metrics": {"loss": 1, "accuracy": 0.7}, "checkpoint": "runs/stall/sft/2/"}'`, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if p.final == nil || p.final.Step != 2 || p.step != 2 || p.metrics["loss"] != 1 || p.metrics["accuracy"] != 0.7 {
			t.Errorf("final %+v, step %d, metrics %v", p.final, p.step, p.metrics)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		_, err := runScript(t, `echo 'lr -1: must be positive' >&2; exit 3`, 5*time.Second)
		var exit *exitError
		if !errors.As(err, &exit) || exit.code != ExitBadInput || exit.tail != "lr -1: must be positive" {
			t.Errorf("exit 3: %v", err)
		}
	})
	t.Run("killed", func(t *testing.T) {
		_, err := runScript(t, `kill -9 $$`, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
			t.Errorf("SIGKILL: %v", err)
		}
	})
	t.Run("names an uncommitted checkpoint", func(t *testing.T) {
		_, err := runScript(t, `echo '{"step": 4, "checkpoint": "runs/stall/sft/4/"}'; sleep 5`, 5*time.Second)
		if !errors.Is(err, errContract) || !strings.Contains(err.Error(), "is not committed") {
			t.Errorf("uncommitted checkpoint: %v", err)
		}
	})
	t.Run("names another stage's checkpoint", func(t *testing.T) {
		_, err := runScript(t, `echo '{"step": 2, "checkpoint": "runs/other/sft/2/"}'`, 5*time.Second)
		if !errors.Is(err, errContract) {
			t.Errorf("checkpoint outside the prefix: %v", err)
		}
	})
	// Silence past the heartbeat timeout stops the whole group, children
	// that ignore SIGTERM included, and so does the leader's exit.
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Run("silent", func(t *testing.T) {
		_, err := runScript(t, `(trap '' TERM; sleep 60) & echo $! > `+pidFile+`; echo '{"step": 0}'; sleep 60`, 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "printed no progress line for 500ms") {
			t.Errorf("silent trainer: %v", err)
		}
		assertDead(t, pidFile)
	})
	t.Run("saves on SIGTERM", func(t *testing.T) {
		p, err := runScript(t, `trap 'echo "{\"step\": 2, \"checkpoint\": \"runs/stall/sft/2/\"}"; exit 143' TERM
echo '{"step": 1}'; sleep 60 & wait`, 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "no progress line") {
			t.Errorf("silent trainer: %v", err)
		}
		if p.final == nil || p.final.Step != 2 {
			t.Errorf("the checkpoint committed on SIGTERM was not taken: %+v", p.final)
		}
	})
	t.Run("leaves a child", func(t *testing.T) {
		p, err := runScript(t, `sleep 60 & echo $! > `+pidFile+`; echo '{"step": 2, "checkpoint": "runs/stall/sft/2/"}'`, 5*time.Second)
		if err != nil || p.final == nil {
			t.Fatalf("%v", err)
		}
		assertDead(t, pidFile)
	})
}

func assertDead(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for range 50 {
		// Gone, or a zombie that no one reaps (its parent, the leader, exited).
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if syscall.Kill(pid, 0) != nil || err == nil && strings.Contains(string(stat), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %d of the trainer's group outlived it", pid)
}
