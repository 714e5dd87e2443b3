package postgres

import (
	"context"
	"fmt"
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

// CheckpointHashes returns every manifest hash recorded for a stage's
// checkpoint at step (more than one when a damaged checkpoint was replaced
// by a retry on another machine), oldest first; none is not an error.
func (db *DB) CheckpointHashes(ctx context.Context, run, stage string, step int64) ([]string, error) {
	return db.texts(ctx, fmt.Sprintf("checkpoint %s/%s step %d", run, stage, step),
		`SELECT manifest_sha256 FROM checkpoints WHERE run_id = $1 AND stage = $2 AND step = $3 ORDER BY id`, run, stage, step)
}
