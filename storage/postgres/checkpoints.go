package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/storage"
)

// RecordCheckpoint records the manifest hash of a checkpoint a stage
// committed. Recording it again (a retried report) adds nothing.
func (db *DB) RecordCheckpoint(ctx context.Context, run, stage string, step int64, key, manifestSHA string) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO checkpoints (run_id, stage, step, key, manifest_sha256) VALUES ($1, $2, $3, $4, $5)
		 ON CONFLICT (run_id, stage, step, manifest_sha256) DO NOTHING`, run, stage, step, key, manifestSHA)
	if err != nil {
		return fmt.Errorf("postgres: record checkpoint %s: %w", key, translate(err))
	}
	return nil
}

// CheckpointSHA returns the manifest hash last recorded for a stage's
// checkpoint at step, or storage.ErrNotFound.
func (db *DB) CheckpointSHA(ctx context.Context, run, stage string, step int64) (string, error) {
	var sha string
	err := db.pool.QueryRow(ctx,
		`SELECT manifest_sha256 FROM checkpoints WHERE run_id = $1 AND stage = $2 AND step = $3
		 ORDER BY id DESC LIMIT 1`, run, stage, step).Scan(&sha)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: checkpoint %s/%s step %d: %w", run, stage, step, storage.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: checkpoint %s/%s step %d: %w", run, stage, step, err)
	}
	return sha, nil
}
