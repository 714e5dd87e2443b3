// Package activities holds InstructFlow's Temporal activities: the bridge
// from deterministic workflow code to Postgres, the object store and the
// trainers. Activities are methods on Activities, registered once per worker.
package activities

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"go.temporal.io/sdk/activity"
)

// labelDB is what the activities need of the Postgres store.
type labelDB interface {
	SchemaVersion(ctx context.Context) (int32, error)
}

// objects is what the activities need of the object store.
type objects interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// Activities holds the dependencies of every activity.
type Activities struct {
	DB      labelDB
	Objects objects
}

// PreflightInput is the input of Preflight.
type PreflightInput struct {
	// ProbeKey is where the object-store probe is written and removed.
	ProbeKey string
}

// PreflightResult says what the worker could reach.
type PreflightResult struct {
	Worker        string `json:"worker"` // host name of the worker that ran it
	TaskQueue     string `json:"task_queue"`
	SchemaVersion int32  `json:"schema_version"`
	ObjectBytes   int    `json:"object_bytes"`
}

// Preflight checks, from a worker, that Postgres answers with the current
// schema and that the object store takes, returns and deletes an object.
func (a *Activities) Preflight(ctx context.Context, in PreflightInput) (PreflightResult, error) {
	host, _ := os.Hostname()
	res := PreflightResult{Worker: host, TaskQueue: activity.GetInfo(ctx).TaskQueue}
	v, err := a.DB.SchemaVersion(ctx)
	if err != nil {
		return res, fmt.Errorf("preflight: postgres: %w", err)
	}
	res.SchemaVersion = v
	probe := make([]byte, 1024)
	if _, err := rand.Read(probe); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	if err := a.Objects.Put(ctx, in.ProbeKey, probe); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	got, err := a.Objects.Get(ctx, in.ProbeKey)
	if err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	if !bytes.Equal(got, probe) {
		return res, errors.New("preflight: object store returned other bytes than were written")
	}
	if err := a.Objects.Delete(ctx, in.ProbeKey); err != nil {
		return res, fmt.Errorf("preflight: %w", err)
	}
	res.ObjectBytes = len(got)
	return res, nil
}
