// Package devstack starts and supervises the local services InstructFlow
// needs on one machine: a private Postgres 15 cluster, the Temporal dev
// server (the official CLI, SQLite file) and versitygw as the S3 object
// store. `instructflow dev`, `make quickstart` and the integration tests all
// start the services through this package.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/config"
)

// Options says where the services keep their data and which ports they use.
// Build it with OptionsFrom so that the stack matches the configuration the
// rest of InstructFlow connects with.
type Options struct {
	DataDir string

	PostgresPort     int
	PostgresUser     string // the cluster's superuser (SuperUser), which sets the roles up
	PostgresPassword string // the superuser's: the owner's password
	PostgresDB       string
	// The schema's owner (postgres.owner_url), who runs the migrations, and
	// the runtime role (postgres.url), a member of instructflow_app; the
	// superuser creates both with these passwords.
	OwnerUser, OwnerPassword string
	AppUser, AppPassword     string

	TemporalPort      int
	TemporalUIPort    int
	TemporalNamespace string

	S3Port      int
	S3AccessKey string
	S3SecretKey string

	// Log receives one line per event (started, reused, restarted).
	Log io.Writer
}

// OptionsFrom derives the stack's options from a validated configuration. It
// refuses addresses that are not on this machine: dev starts local services.
func OptionsFrom(cfg config.Config, log io.Writer) (Options, error) {
	pg, err := pgx.ParseConfig(cfg.Postgres.URL)
	if err != nil {
		return Options{}, fmt.Errorf("devstack: postgres.url: %w", err)
	}
	tHost, _, _ := net.SplitHostPort(cfg.Temporal.Address)
	tPort, err := config.HostPort(cfg.Temporal.Address)
	if err != nil {
		return Options{}, fmt.Errorf("devstack: temporal.address: %w", err)
	}
	s3Host, _, err := cfg.S3.HostAndTLS()
	if err != nil {
		return Options{}, fmt.Errorf("devstack: s3.endpoint: %w", err)
	}
	if u, _ := url.Parse(cfg.S3.Endpoint); u != nil && u.Scheme == "https" {
		return Options{}, errors.New("devstack: s3.endpoint uses https, but the local object store serves http; use http://127.0.0.1:PORT")
	}
	s3Port, _ := config.HostPort(s3Host)
	s3h, _, _ := net.SplitHostPort(s3Host)
	for key, host := range map[string]string{"postgres.url": pg.Host, "temporal.address": tHost, "s3.endpoint": s3h} {
		if !isLoopback(host) {
			return Options{}, fmt.Errorf("devstack: %s points at %q, which is not this machine; `instructflow dev` starts local services, so use 127.0.0.1 or localhost", key, host)
		}
	}
	if pg.Password == "" {
		return Options{}, errors.New("devstack: postgres.url has no password; the local cluster uses password authentication, so give one (postgres://user:password@127.0.0.1:5432/db)")
	}
	owner, err := ownerOptions(cfg.Postgres.OwnerURL, pg)
	if err != nil {
		return Options{}, err
	}
	return Options{
		DataDir:           cfg.DataDir,
		PostgresPort:      int(pg.Port),
		PostgresUser:      SuperUser,
		PostgresPassword:  owner.Password,
		PostgresDB:        pg.Database,
		OwnerUser:         owner.User,
		OwnerPassword:     owner.Password,
		AppUser:           pg.User,
		AppPassword:       pg.Password,
		TemporalPort:      tPort,
		TemporalUIPort:    cfg.Temporal.UIPort,
		TemporalNamespace: cfg.Temporal.Namespace,
		S3Port:            s3Port,
		S3AccessKey:       cfg.S3.AccessKey,
		S3SecretKey:       cfg.S3.SecretKey,
		Log:               log,
	}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Stack is the set of running local services.
type Stack struct {
	opts     Options
	services []*service // in start order; stopped in reverse
}

// Endpoint is where one service answers.
type Endpoint struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	PID     int    `json:"pid"`
	Reused  bool   `json:"reused"` // already running before this stack started
	Log     string `json:"log"`
	Data    string `json:"data"` // the folder holding its state
}

// Start starts Postgres, the Temporal dev server and versitygw (or reuses
// ours where they already run) and returns when all three answer. On error,
// whatever it started is stopped again.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	dataDir, err := prepareDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	opts.DataDir = dataDir
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	// Postgres runs as the postgres user when dev runs as root; its cluster
	// lives where that user can reach it.
	home, err := locatePostgres(dataDir, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("devstack: postgres: %w", err)
	}
	if home.why != "" {
		fmt.Fprintf(opts.Log, "devstack: postgres keeps its cluster in %s (%s; recorded in %s)\n",
			home.dir, home.why, filepath.Join(dataDir, locationFile))
	}
	st := &Stack{opts: opts, services: []*service{
		newPostgres(opts, bins.postgres, home),
		newTemporal(opts, bins.temporal),
		newObjectStore(opts, bins.versitygw),
	}}
	for _, s := range st.services {
		if err := s.checkPorts(); err != nil {
			return nil, err
		}
	}
	for _, s := range st.services {
		if err := s.start(ctx); err != nil {
			st.Stop(context.Background())
			return nil, err
		}
		pid, owned, _ := s.state()
		verb := "started"
		if !owned {
			verb = "reusing"
		}
		fmt.Fprintf(opts.Log, "devstack: %s %s (pid %d)\n", verb, s.name, pid)
	}
	return st, nil
}

// Endpoints lists where each service answers.
func (st *Stack) Endpoints() []Endpoint {
	addrs := map[string]string{
		"postgres": fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s", st.opts.AppUser, st.opts.PostgresPort, st.opts.PostgresDB),
		"temporal": fmt.Sprintf("127.0.0.1:%d (Web UI http://127.0.0.1:%d)", st.opts.TemporalPort, st.opts.TemporalUIPort),
		"s3":       fmt.Sprintf("http://127.0.0.1:%d", st.opts.S3Port),
	}
	var out []Endpoint
	for _, s := range st.services {
		pid, owned, _ := s.state()
		out = append(out, Endpoint{Name: s.name, Address: addrs[s.name], PID: pid, Reused: !owned, Log: s.logFile, Data: s.dir})
	}
	return out
}

// Supervise watches the services it started until ctx ends, restarting one
// that exits unexpectedly. It gives up, returning an error, when a service
// cannot be brought back three times in a row.
func (st *Stack) Supervise(ctx context.Context) error {
	failures := map[string]int{}
	for {
		var cases []*service
		for _, s := range st.services {
			if _, owned, _ := s.state(); owned {
				cases = append(cases, s)
			}
		}
		crashed, err := st.waitExit(ctx, cases)
		if err != nil {
			return nil // ctx ended: a normal stop
		}
		if _, owned, _ := crashed.state(); !owned {
			continue // stopped on purpose by StopService
		}
		fmt.Fprintf(st.opts.Log, "devstack: %s exited unexpectedly (%v); see %s; restarting\n",
			crashed.name, crashed.exitErr(), crashed.logFile)
		for {
			err := crashed.start(ctx)
			if err == nil {
				failures[crashed.name] = 0
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			failures[crashed.name]++
			if failures[crashed.name] >= 3 {
				return fmt.Errorf("devstack: %s: gave up after 3 restarts: %w", crashed.name, err)
			}
			time.Sleep(time.Second)
		}
	}
}

// waitExit blocks until one of the services exits or ctx ends.
func (st *Stack) waitExit(ctx context.Context, services []*service) (*service, error) {
	done := make(chan *service, len(services))
	stop := make(chan struct{})
	defer close(stop)
	for _, s := range services {
		_, _, exited := s.state()
		go func() {
			select {
			case <-exited:
				done <- s
			case <-stop:
			}
		}()
	}
	select {
	case s := <-done:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop stops, in reverse start order, every service this stack started;
// reused services keep running.
func (st *Stack) Stop(ctx context.Context) error {
	var errs []error
	for i := len(st.services) - 1; i >= 0; i-- {
		s := st.services[i]
		pid, owned, _ := s.state()
		if err := s.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		if owned {
			fmt.Fprintf(st.opts.Log, "devstack: stopped %s (pid %d)\n", s.name, pid)
		}
	}
	return errors.Join(errs...)
}

// StopService stops one service (for fault-injection tests); the supervisor
// does not restart a service stopped this way. StartService brings it back.
func (st *Stack) StopService(ctx context.Context, name string) error {
	s, err := st.service(name)
	if err != nil {
		return err
	}
	return s.stop(ctx)
}

// StartService starts a service stopped by StopService and waits until it
// answers.
func (st *Stack) StartService(ctx context.Context, name string) error {
	s, err := st.service(name)
	if err != nil {
		return err
	}
	return s.start(ctx)
}

func (st *Stack) service(name string) (*service, error) {
	for _, s := range st.services {
		if s.name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("devstack: no service %q (have postgres, temporal, s3)", name)
}
