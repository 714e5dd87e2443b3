package devstack

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// newTemporal describes the Temporal CLI dev server with its state in a
// SQLite file under DataDir/temporal, so that workflows survive a restart.
func newTemporal(opts Options, bin string) *service {
	dir := filepath.Join(opts.DataDir, "temporal")
	s := &service{
		name:     "temporal",
		ports:    []int{opts.TemporalPort, opts.TemporalUIPort},
		exe:      bin,
		dir:      dir,
		pidFile:  filepath.Join(dir, "temporal.pid"),
		writePID: true,
		logFile:  filepath.Join(opts.DataDir, "logs", "temporal.log"),
		stopSig:  syscall.SIGTERM,
		timeout:  2 * time.Minute, // the first start creates the SQLite schema
		hint: func(port int) string {
			if port == opts.TemporalUIPort {
				return "choose another Web UI port with temporal.ui_port (INSTRUCTFLOW_TEMPORAL_UI_PORT or --temporal-ui-port)"
			}
			return "choose another port in temporal.address (INSTRUCTFLOW_TEMPORAL_ADDRESS or --temporal-address)"
		},
	}
	s.prepare = func(context.Context) error { return mkdirAll(dir) }
	s.command = func() *exec.Cmd {
		return exec.Command(bin, "server", "start-dev",
			"--db-filename", filepath.Join(dir, "temporal.db"),
			"--ip", "127.0.0.1",
			"--port", strconv.Itoa(opts.TemporalPort),
			"--ui-port", strconv.Itoa(opts.TemporalUIPort),
			"--namespace", opts.TemporalNamespace,
			"--log-level", "warn",
		)
	}
	s.ready = func(ctx context.Context) error {
		c, err := client.DialContext(ctx, client.Options{
			HostPort:  "127.0.0.1:" + strconv.Itoa(opts.TemporalPort),
			Namespace: opts.TemporalNamespace,
			Logger:    QuietTemporalLogger(),
		})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: opts.TemporalNamespace})
		return err
	}
	return s
}

// QuietTemporalLogger is a Temporal SDK logger that keeps only errors, for
// short-lived clients whose failures are reported as errors anyway.
func QuietTemporalLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}
