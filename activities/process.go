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
)

// trainerProcess is one attempt's external trainer: its process group,
// and what its progress lines said.
type trainerProcess struct {
	t                *tracker
	heartbeat, grace time.Duration
	metrics          map[string]float64 // last value of each metric reported
	final            *Checkpoint        // the last checkpoint named
	step             int64              // the last step reported
}

// tailLines is how many of the trainer's last stderr lines an error quotes.
const tailLines = 8

// run starts argv in a process group of its own and follows it until it
// exits: progress lines become reports; a cancelled ctx, the worker
// stopping, a failed report or no progress line for the heartbeat timeout
// stop the group (SIGTERM, then SIGKILL after the grace). Whatever the
// group left running when its leader exited is killed.
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

	// stop asks the group to end with SIGTERM, and kills it once the grace
	// is over; until the leader exits, its progress lines (a checkpoint
	// committed on SIGTERM) are still read and recorded.
	var failed error
	var kill *time.Timer
	stop := func(why error) {
		if failed != nil {
			return
		}
		failed = why
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		kill = time.AfterFunc(p.grace, func() {
			p.t.log.Warn("trainer did not exit within its grace after SIGTERM; killing its process group", "run", p.t.run, "stage", p.t.stage, "grace", p.grace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		})
	}
	// Once stopping, reports are recorded even though ctx is cancelled.
	rctx := context.WithoutCancel(ctx)
	all := lines
	defer func() {
		go func() { // unblock the reader of what nobody reads any more
			for range all {
			}
		}()
	}()
	handle := func(line []byte) {
		pl, isProgress := progressOf(line)
		if !isProgress {
			if len(line) > 0 && line[0] == '{' {
				p.t.log.Warn("trainer stdout: a line that starts with { but is not a progress line (JSON with \"step\"; NaN and Infinity are not JSON): "+string(line), "run", p.t.run, "stage", p.t.stage)
			} else {
				p.t.log.Info("trainer stdout: "+string(line), "run", p.t.run, "stage", p.t.stage)
			}
			return
		}
		if err := p.report(rctx, pl); err != nil {
			stop(err)
		}
	}
	tick := time.NewTicker(min(time.Second, p.heartbeat/4))
	defer tick.Stop()
	last := time.Now()
	ctxDone, workerStop := ctx.Done(), p.t.workerStop
	var done exit
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdout closed; the exit follows
				continue
			}
			handle(line)
			last = time.Now()
		case done = <-exited:
			break loop
		case <-ctxDone:
			ctxDone = nil
			stop(ctx.Err())
		case <-workerStop:
			workerStop = nil
			stop(fmt.Errorf("%w: %s asked its trainer to save and stop", ErrWorkerStopping, p.t.stage))
		case now := <-tick.C:
			if now.Sub(last) > p.heartbeat {
				stop(fmt.Errorf("the trainer printed no progress line for %s (retry.heartbeat_timeout); its process group was stopped, and the attempt is retried from the last checkpoint", p.heartbeat))
			}
		}
	}
	if kill != nil {
		kill.Stop()
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // what the leader left behind
	// The last lines (the final checkpoint's) may still be in the pipe.
	drain := time.After(10 * time.Second)
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			handle(line)
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
