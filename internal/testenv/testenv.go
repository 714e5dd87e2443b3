// Package testenv gives integration tests the configuration of the real
// services that `make test` starts (scripts/test.sh). Tests that need them
// call Config: without INSTRUCTFLOW_INTEGRATION=1 they skip; with it, they
// must reach the services or fail.
package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

// Config returns the default configuration overridden by the INSTRUCTFLOW_*
// string variables, or skips the test when integration tests are off.
func Config(t testing.TB) config.Config {
	t.Helper()
	if os.Getenv("INSTRUCTFLOW_INTEGRATION") != "1" {
		t.Skip("integration test: set INSTRUCTFLOW_INTEGRATION=1 with the local stack running (make test does both)")
	}
	cfg := config.Default()
	for key, dst := range map[string]*string{
		"data_dir":            &cfg.DataDir,
		"temporal.address":    &cfg.Temporal.Address,
		"temporal.namespace":  &cfg.Temporal.Namespace,
		"temporal.task_queue": &cfg.Temporal.TaskQueue,
		"postgres.url":        &cfg.Postgres.URL,
		"postgres.owner_url":  &cfg.Postgres.OwnerURL,
		"s3.endpoint":         &cfg.S3.Endpoint,
		"s3.region":           &cfg.S3.Region,
		"s3.bucket":           &cfg.S3.Bucket,
		"s3.access_key":       &cfg.S3.AccessKey,
		"s3.secret_key":       &cfg.S3.SecretKey,
	} {
		if v, ok := os.LookupEnv(config.EnvName(key)); ok {
			*dst = v
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("integration config: %v", err)
	}
	return cfg
}

// Name turns a test name into an id usable for databases, buckets and runs.
func Name(t testing.TB) string {
	r := strings.NewReplacer("/", "-", "_", "-", " ", "-")
	n := strings.ToLower(r.Replace(t.Name()))
	if len(n) > 40 {
		n = n[:40]
	}
	return strings.Trim(n, "-")
}

// FreshDatabase creates a database for one test on the real server, as the
// owner (postgres.owner_url), migrates it as the owner, and returns its URL
// for the runtime role (postgres.url): what workers and the CLI connect
// with. The database is dropped when the test ends. OwnerURL gives the
// owner's URL of it, for tests that need the owner's rights.
func FreshDatabase(t testing.TB) string {
	t.Helper()
	cfg := Config(t)
	owner := EmptyDatabase(t)
	runtime, err := pgx.ParseConfig(cfg.Postgres.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Migrate(context.Background(), owner, runtime.User); err != nil {
		t.Fatalf("migrate the test database: %v", err)
	}
	return RuntimeURL(t, owner)
}

// OwnerURL is the owner's URL of the database that dbURL names.
func OwnerURL(t testing.TB, dbURL string) string {
	t.Helper()
	return withDatabase(t, Config(t).Postgres.OwnerURL, databaseOf(t, dbURL))
}

// RuntimeURL is the runtime role's URL of the database that dbURL names.
func RuntimeURL(t testing.TB, dbURL string) string {
	t.Helper()
	return withDatabase(t, Config(t).Postgres.URL, databaseOf(t, dbURL))
}

func databaseOf(t testing.TB, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// EmptyDatabase creates a database with no schema for one test, as the
// owner, and returns its owner's URL; it is dropped when the test ends.
func EmptyDatabase(t testing.TB) string {
	t.Helper()
	cfg := Config(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, cfg.Postgres.OwnerURL)
	if err != nil {
		t.Fatalf("connect to the test server as the owner (INSTRUCTFLOW_POSTGRES_OWNER_URL): %v", err)
	}
	name := fmt.Sprintf("t_%s_%d", strings.ReplaceAll(Name(t), "-", "_"), time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		admin.Close(ctx)
	})
	return withDatabase(t, cfg.Postgres.OwnerURL, name)
}

func withDatabase(t testing.TB, raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// RecordHistory writes a workflow execution's history as JSON to file, for
// a replay test (run the recording test again with its -update flag after
// a deliberate change to the workflow).
func RecordHistory(t testing.TB, c client.Client, id, runID, file string) {
	t.Helper()
	ctx := context.Background()
	hist := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, id, runID, false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(hist)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
