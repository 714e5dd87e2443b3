package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/model/kernel"
	"github.com/instructflow/instructflow/modelstore"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

func newWorkerCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker for InstructFlow's workflows and activities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			var metrics *activities.Metrics
			if addr := cfg.Worker.MetricsAddress; addr != "" {
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
				metrics = activities.NewMetrics(reg)
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return fmt.Errorf("worker: metrics endpoint: %w (set worker.metrics_address to a free host:port, or empty to turn it off)", err)
				}
				mux := http.NewServeMux()
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
				fmt.Fprintf(cmd.ErrOrStderr(), "instructflow worker: metrics on http://%s/metrics\n", ln.Addr())
			}
			w, closeAll, err := startWorker(cmd.Context(), cfg, metrics, slog.LevelInfo)
			if err != nil {
				return err
			}
			defer closeAll()
			fmt.Fprintf(cmd.ErrOrStderr(), "instructflow worker: polling task queue %q on %s\n", cfg.Temporal.TaskQueue, cfg.Temporal.Address)
			printEngine(cmd.ErrOrStderr(), "instructflow worker")
			<-cmd.Context().Done()
			fmt.Fprintf(cmd.ErrOrStderr(), "instructflow worker: stopping; running stages stop after their next checkpoint (at most %s)\n", workerStopTimeout)
			w.Stop()
			return nil
		},
	}
}

// printEngine says which kernels the engine runs and warns when OpenBLAS
// picked slower ones than the CPU has.
func printEngine(w io.Writer, who string) {
	fmt.Fprintf(w, "%s: engine kernels %s at level %s, OpenBLAS core %q\n", who, kernel.Name, kernel.Level(), kernel.BLASCore())
	if advice := kernel.BLASAdvice(); advice != "" {
		fmt.Fprintf(w, "%s: warning: %s\n", who, advice)
	}
}

// workerStopTimeout is how long a stopping worker lets running stages reach
// their next checkpoint before it cancels them.
const workerStopTimeout = 5 * time.Minute

// startWorker connects to everything an activity needs and starts a worker
// for the workflows and activities on cfg's task queue. closeAll releases
// the connections after the worker stopped. metrics may be nil.
func startWorker(ctx context.Context, cfg config.Config, metrics *activities.Metrics, logLevel slog.Level) (worker.Worker, func(), error) {
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, nil, err
	}
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	c, err := control.DialTemporal(ctx, cfg.Temporal,
		tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{WorkerStopTimeout: workerStopTimeout})
	w.RegisterWorkflow(workflows.Preflight)
	w.RegisterWorkflow(workflows.Pipeline)
	w.RegisterActivity(newActivities(cfg, db, store, metrics))
	if err := w.Start(); err != nil {
		c.Close()
		db.Close()
		return nil, nil, fmt.Errorf("worker: start: %w", err)
	}
	return w, func() { c.Close(); db.Close() }, nil
}

// newActivities are the worker's activities with cfg's limits: at most
// worker.max_concurrent_stages stages computing at once, and the stall
// timeout; and what its external trainers get (trainerEnv).
func newActivities(cfg config.Config, db *postgres.DB, store *objectstore.Store, metrics *activities.Metrics) *activities.Activities {
	bin, err := os.Executable()
	if err != nil {
		bin = os.Args[0]
	}
	jobs, err := filepath.Abs(filepath.Join(cfg.DataDir, "jobs")) // job files outlive a trainer's cd
	if err != nil {
		jobs = filepath.Join(cfg.DataDir, "jobs")
	}
	return &activities.Activities{DB: db, Objects: store, Metrics: metrics, Models: modelstore.Store{DB: db, Blobs: store},
		StallTimeout: cfg.Worker.StallTimeout, Slots: activities.NewSlots(cfg.Worker.MaxConcurrentStages),
		Trainers: activities.Trainers{Env: trainerEnv(cfg.S3), Binary: bin, Dir: jobs,
			ObjectStore: activities.JobObjectStore{Endpoint: cfg.S3.Endpoint, Region: cfg.S3.Region, Bucket: cfg.S3.Bucket}}}
}

// trainerEnv is the object store's settings and credentials as an
// external trainer's environment: INSTRUCTFLOW_S3_* for `instructflow
// ckpt`, and the AWS_* names that boto3, s3fs and the AWS CLI read.
func trainerEnv(s config.S3) []string {
	return []string{
		config.EnvName("s3.endpoint") + "=" + s.Endpoint,
		config.EnvName("s3.region") + "=" + s.Region,
		config.EnvName("s3.bucket") + "=" + s.Bucket,
		config.EnvName("s3.access_key") + "=" + s.AccessKey,
		config.EnvName("s3.secret_key") + "=" + s.SecretKey,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_DEFAULT_REGION=" + s.Region,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
	}
}
