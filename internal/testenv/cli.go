package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CLI is the instructflow binary as a user runs it, on a fresh database and
// a task queue of the test's own (so that its worker takes only its runs).
type CLI struct {
	t     testing.TB
	Bin   string
	Env   []string // os.Environ() with the database and task queue
	DBURL string
	Dir   string // where commands run ("": the test's package folder)
}

// NewCLI builds the binary and makes its database; name prefixes the task
// queue. Its workers serve metrics on a free port, so that tests in
// parallel do not contend for the default one.
func NewCLI(t testing.TB, name string) *CLI {
	t.Helper()
	Config(t)
	db := FreshDatabase(t)
	queue := name + "-" + time.Now().Format("150405.000")
	return &CLI{t: t, Bin: BuildCLI(t), DBURL: db,
		Env: append(os.Environ(), "INSTRUCTFLOW_POSTGRES_URL="+db, "INSTRUCTFLOW_TEMPORAL_TASK_QUEUE="+queue,
			fmt.Sprintf("INSTRUCTFLOW_WORKER_METRICS_ADDRESS=127.0.0.1:%d", FreePort(t)))}
}

// Run runs a command and returns its standard output; a failure fails the
// test with both outputs.
func (c *CLI) Run(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.Bin, args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("instructflow %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errw.String())
	}
	return out.String()
}

// Start starts a long-running command (a worker, a labeler), its output to
// a log file in the test's temporary folder; it is killed when the test
// ends, or earlier by the caller.
func (c *CLI) Start(log string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(c.Bin, args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	f, err := os.Create(filepath.Join(c.t.TempDir(), log))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); f.Close() })
	return cmd
}
