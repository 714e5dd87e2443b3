package activities

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
)

// trainerProcess is one attempt's external trainer: its process group,
// and what its progress lines said.
type trainerProcess struct {
	t                *tracker
	store            checkpoint.Store // the stage's checkpoints
	heartbeat, grace time.Duration
	metrics          map[string]float64 // last value of each metric reported
	final            *Checkpoint        // the last checkpoint named
	step             int64              // the last step reported
}

// tailLines is how many of the trainer's last stderr lines an error quotes.
const tailLines = 8

// run starts argv in a process group of its own and follows it until it
// exits: progress lines become reports; a cancelled ctx, a failed report
// or no progress line for the heartbeat timeout stop the group (SIGTERM,
// then SIGKILL after the grace). Whatever the group left running when its
// leader exited is killed.
func (p *trainerProcess) run(ctx context.Context, argv []string, env []string) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	defer outR.Close()
	defer errR.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = env, outW, errW, procAttr()

	type exit struct {
		state *os.ProcessState
		err   error
	}
	started, exited := make(chan error, 1), make(chan exit, 1)
	go func() {
		// Linux sends the parent-death signal (procAttr) when the thread
		// that started the process ends: this goroutine keeps its thread
		// locked until the process is gone, so only the worker's own death
		// kills the trainer.
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			err = cmd.Wait()
			exited <- exit{cmd.ProcessState, err}
		}
	}()
	err = <-started
	outW.Close()
	errW.Close()
	if err != nil {
		return fmt.Errorf("start the trainer %q: %w; is it installed on this worker? (the stage's command runs in the worker's folder)", argv[0], err)
	}
	pgid := cmd.Process.Pid

	lines := make(chan []byte, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	tail := &stderrTail{log: func(line string) { p.t.log.Info("trainer: "+line, "run", p.t.run, "stage", p.t.stage) }}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		tail.read(errR)
	}()

	// stop ends the group: SIGTERM, and SIGKILL once the grace is over.
	stop := func() exit {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case e := <-exited:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return e
		case <-time.After(p.grace):
			p.t.log.Warn("trainer did not exit within its grace after SIGTERM; killing its process group", "run", p.t.run, "stage", p.t.stage, "grace", p.grace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return <-exited
		}
	}
	tick := time.NewTicker(min(time.Second, p.heartbeat/4))
	defer tick.Stop()
	last := time.Now()
	var failed error
	var done exit
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdout closed; the exit follows
				continue
			}
			pl, isProgress := progressOf(line)
			if !isProgress {
				p.t.log.Info("trainer stdout: "+string(line), "run", p.t.run, "stage", p.t.stage)
				continue
			}
			last = time.Now()
			if err := p.report(ctx, pl); err != nil {
				failed, done = err, stop()
				break loop
			}
		case done = <-exited:
			break loop
		case <-ctx.Done():
			failed, done = ctx.Err(), stop()
			break loop
		case now := <-tick.C:
			if now.Sub(last) > p.heartbeat {
				failed = fmt.Errorf("the trainer printed no progress line for %s (retry.heartbeat_timeout); its process group was stopped, and the attempt is retried from the last checkpoint",
					p.heartbeat)
				done = stop()
				break loop
			}
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // what the leader left behind
	// The last lines (the final checkpoint's) may still be in the pipe.
	drain := time.After(10 * time.Second)
	for lines != nil && failed == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			if pl, isProgress := progressOf(line); isProgress {
				if err := p.report(ctx, pl); err != nil {
					failed = err
				}
			}
		case <-drain:
			lines = nil
		}
	}
	select {
	case <-stderrDone:
	case <-time.After(2 * time.Second):
	}
	if failed != nil {
		return failed
	}
	if done.state != nil && done.state.Success() {
		return nil
	}
	return tail.exitError(done.state, done.err)
}

// stderrTail logs a trainer's stderr line by line and keeps its last lines.
type stderrTail struct {
	log  func(string)
	mu   sync.Mutex
	last []string
}

func (s *stderrTail) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		s.log(line)
		if strings.TrimSpace(line) == "" {
			continue
		}
		s.mu.Lock()
		s.last = append(s.last, line)
		if len(s.last) > tailLines {
			s.last = s.last[1:]
		}
		s.mu.Unlock()
	}
}

// exitError describes how the trainer ended, with its last stderr lines.
func (s *stderrTail) exitError(state *os.ProcessState, err error) error {
	s.mu.Lock()
	tail := strings.Join(s.last, "\n")
	s.mu.Unlock()
	e := &exitError{code: -1, tail: tail}
	var ee *exec.ExitError
	switch {
	case state == nil && !errors.As(err, &ee):
		e.how = fmt.Sprintf("failed: %v", err)
	case state != nil && state.ExitCode() >= 0:
		e.code, e.how = state.ExitCode(), fmt.Sprintf("exited with status %d", state.ExitCode())
	default:
		e.how = "was killed by a signal"
		if state != nil {
			if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.how = fmt.Sprintf("was killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
			}
		}
	}
	return e
}
