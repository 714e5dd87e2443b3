// Package testenv gives integration tests the configuration of the real
// services that `make test` starts (scripts/test.sh). Tests that need them
// call Config: without INSTRUCTFLOW_INTEGRATION=1 they skip; with it, they
// must reach the services or fail.
package testenv

import (
	"os"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/config"
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
