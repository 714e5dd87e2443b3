package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// service is one supervised local server process.
type service struct {
	name     string
	ports    []int          // ports it listens on; ports[0] is the main one
	exe      string         // the program it runs, to recognise a reused process by /proc/<pid>/exe
	dir      string         // its data folder, named in its command line, ditto
	pidFile  string         // where its pid is found (postmaster.pid for Postgres)
	writePID bool           // whether we write pidFile ourselves
	logFile  string         // its stdout and stderr
	stopSig  syscall.Signal // the signal for a clean, fast shutdown
	timeout  time.Duration  // how long it may take to become ready

	prepare func(ctx context.Context) error // one-time set-up before the first start (initdb)
	command func() *exec.Cmd                // the command to run, without I/O wiring
	ready   func(ctx context.Context) error // nil once the service answers
	after   func(ctx context.Context) error // set-up once ready (create the database)
	hint    func(port int) string           // how to choose another port

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd exits
	waitErr error
	owned   bool // we started it, so we stop it
	reused  int  // pid of a reused process, or 0
}

// start starts the service or reuses one of ours that already runs, then
// waits until it answers.
func (s *service) start(ctx context.Context) error {
	if pid := s.earlier(); pid != 0 {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.ready(rctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.reused, s.owned = pid, false
			s.mu.Unlock()
			return s.runAfter(ctx)
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("devstack: %s: %w", s.name, perm.err)
		}
		return fmt.Errorf("devstack: %s: a previous %s (pid %d, data in %s) runs but does not answer (%v); stop it with `kill %d` and start again",
			s.name, s.name, pid, filepath.Dir(s.pidFile), err, pid)
	}
	if err := s.checkPorts(); err != nil {
		return err
	}
	if s.prepare != nil {
		if err := s.prepare(ctx); err != nil {
			return fmt.Errorf("devstack: %s: prepare: %w", s.name, err)
		}
	}
	if err := s.spawn(); err != nil {
		return err
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop(context.Background())
		return err
	}
	return s.runAfter(ctx)
}

// checkPorts fails when another process holds one of the service's ports,
// unless that process is this service's earlier instance, which start reuses.
func (s *service) checkPorts() error {
	if s.earlier() != 0 {
		return nil
	}
	for _, p := range s.ports {
		if !portFree(p) {
			return fmt.Errorf("devstack: %s: port %d is in use by %s; stop that process or %s",
				s.name, p, portHolder(p), s.hint(p))
		}
	}
	return nil
}

// earlier returns the pid of this service's earlier instance, the one its
// pid file names, if that process still runs this service's program on this
// service's folder; otherwise 0.
func (s *service) earlier() int {
	if pid := readPID(s.pidFile); processIs(pid, s.exe, s.dir) {
		return pid
	}
	return 0
}

func (s *service) runAfter(ctx context.Context) error {
	if s.after == nil {
		return nil
	}
	if err := s.after(ctx); err != nil {
		return fmt.Errorf("devstack: %s: %w", s.name, err)
	}
	return nil
}

// spawn starts the process with its output appended to the log file.
func (s *service) spawn() error {
	if err := mkdirAll(filepath.Dir(s.logFile)); err != nil {
		return fmt.Errorf("devstack: %s: %w", s.name, err)
	}
	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("devstack: %s: open log: %w", s.name, err)
	}
	cmd := s.command()
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Own process group: a terminal's Ctrl-C reaches only `instructflow dev`,
	// which then stops the services in order. If it dies, they die too.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("devstack: %s: start %s: %w", s.name, cmd.Path, err)
	}
	log.Close() // the child holds its own copy
	if s.writePID {
		if err := os.WriteFile(s.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("devstack: %s: write pid file: %w", s.name, err)
		}
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.owned, s.reused = cmd, exited, true, 0
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	return nil
}

// waitReady polls the readiness check until it passes, the process exits or
// the timeout elapses.
func (s *service) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		last = s.ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(last, &perm) {
			return fmt.Errorf("devstack: %s: %w", s.name, perm.err)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("devstack: %s exited during start-up (%v); last lines of %s:\n%s",
				s.name, s.exitErr(), s.logFile, tail(s.logFile, 15))
		case <-ctx.Done():
			return fmt.Errorf("devstack: %s did not become ready within %s (%v); see %s",
				s.name, s.timeout, last, s.logFile)
		case <-tick.C:
		}
	}
}

func (s *service) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waitErr == nil {
		return errors.New("exit status 0")
	}
	return s.waitErr
}

// stop ends a process we started: the clean signal first, SIGKILL after 20s.
// A reused process is left running.
func (s *service) stop(ctx context.Context) error {
	s.mu.Lock()
	cmd, exited, owned := s.cmd, s.exited, s.owned
	s.owned = false
	s.mu.Unlock()
	if !owned || cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(s.stopSig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	// Children of the service in its process group (none expected) go too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if s.writePID {
		_ = os.Remove(s.pidFile)
	}
	return nil
}

// state returns the pid and whether we own the process.
func (s *service) state() (pid int, owned bool, exited <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owned && s.cmd != nil {
		return s.cmd.Process.Pid, true, s.exited
	}
	return s.reused, false, nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// permanentError is a readiness failure that waiting will not cure, such as
// rejected credentials.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

func permanent(err error) error { return &permanentError{err: err} }
