package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/storage"
)

// Run is a run's record.
type Run struct {
	ID        string          `json:"id"`
	Spec      json.RawMessage `json:"spec"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Stage is a stage's record: what a resumed run reads to skip a finished
// stage, and what a report shows.
type Stage struct {
	Name     string          `json:"name"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"` // times the stage started work (a reused result does not count)
	Result   json.RawMessage `json:"result,omitempty"`
	// ConfigSHA256 is the hash of the stage's settings when it last started.
	ConfigSHA256  string     `json:"config_sha256,omitempty"`
	Snapshot      string     `json:"snapshot,omitempty"`
	CheckpointKey string     `json:"checkpoint_key,omitempty"`
	CheckpointSHA string     `json:"checkpoint_sha256,omitempty"`
	Error         string     `json:"error,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
}

// CreateRun records a new run with its spec (JSON). Creating a run that
// exists with the same spec is a no-op, so a retried activity is harmless.
func (db *DB) CreateRun(ctx context.Context, id string, spec []byte) error {
	if err := storage.ValidateID("run", id); err != nil {
		return fmt.Errorf("postgres: create run: %w", err)
	}
	tag, err := db.pool.Exec(ctx,
		`INSERT INTO runs (id, spec) VALUES ($1, $2)
		 ON CONFLICT (id) DO UPDATE SET updated_at = runs.updated_at WHERE runs.spec = EXCLUDED.spec`, id, spec)
	if err != nil {
		return fmt.Errorf("postgres: create run %s: %w", id, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create run %s: a run with this id and another spec exists; choose a new run id: %w", id, errkind.Conflict)
	}
	return nil
}

// SetRunStatus records a run's status, with its report when it succeeded or
// the error when it failed.
func (db *DB) SetRunStatus(ctx context.Context, run, status string, result []byte, errText string) error {
	var res any
	if result != nil {
		res = result
	}
	tag, err := db.pool.Exec(ctx,
		`UPDATE runs SET status = $2, result = coalesce($3::jsonb, result), error = nullif($4, ''), updated_at = now()
		 WHERE id = $1`, run, status, res, errText)
	if err != nil {
		return fmt.Errorf("postgres: set run %s %s: %w", run, status, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set run %s: %w", run, errkind.NotFound)
	}
	return nil
}

// ResumeRun records a resumed run: its spec (when it changed, with the old
// and the new spec in the audit log) and the status pending. It writes
// only once start, which starts the run's new execution, succeeded: if
// start fails, the record is as it was. The run's row stays locked from
// before start until the commit, so the execution's first activity, which
// checks the stored spec, waits for the new one instead of refusing it.
func (db *DB) ResumeRun(ctx context.Context, run string, spec []byte, start func(context.Context) error) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var old []byte
		var same bool
		if err := tx.QueryRow(ctx, "SELECT spec, spec = $2::jsonb FROM runs WHERE id = $1 FOR UPDATE", run, spec).Scan(&old, &same); err != nil {
			return err
		}
		if !same {
			if _, err := tx.Exec(ctx, "UPDATE runs SET spec = $2 WHERE id = $1", run, spec); err != nil {
				return err
			}
			detail, err := json.Marshal(map[string]json.RawMessage{"old": old, "new": spec})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO audit_log (action, entity, entity_id, detail) VALUES ('update_spec', 'run', $1, $2)", run, detail); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE runs SET status = 'pending', error = NULL, updated_at = now() WHERE id = $1", run); err != nil {
			return err
		}
		if err := start(ctx); err != nil {
			return errStartFailed{err}
		}
		return nil
	})
	var sf errStartFailed
	if errors.As(err, &sf) {
		return sf.err
	}
	if err != nil {
		return fmt.Errorf("postgres: resume run %s: %w", run, translate(err))
	}
	return nil
}

// errStartFailed carries the start callback's error through the
// transaction unwrapped.
type errStartFailed struct{ err error }

func (e errStartFailed) Error() string { return e.err.Error() }

const runColumns = "id, spec, status, result, coalesce(error, ''), created_at, updated_at"

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	var spec, result []byte
	err := row.Scan(&r.ID, &spec, &r.Status, &result, &r.Error, &r.CreatedAt, &r.UpdatedAt)
	r.Spec, r.Result = spec, result
	return r, err
}

// GetRun reads a run's record.
func (db *DB) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, "SELECT "+runColumns+" FROM runs WHERE id = $1", id))
	if err != nil {
		return Run{}, fmt.Errorf("postgres: run %s: %w", id, translate(err))
	}
	return r, nil
}

// Runs lists the newest runs first.
func (db *DB) Runs(ctx context.Context, limit int) ([]Run, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+runColumns+" FROM runs ORDER BY created_at DESC, id LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list runs: %w", err)
	}
	return runs, nil
}

// BeginStage records that a stage starts work with settings of the given
// hash: status running, one more attempt, started_at kept from the first.
func (db *DB) BeginStage(ctx context.Context, run, stage, configSHA string) error {
	if err := storage.ValidateID("stage", stage); err != nil {
		return fmt.Errorf("postgres: begin stage: %w", err)
	}
	_, err := db.pool.Exec(ctx,
		`INSERT INTO stages (run_id, name, status, attempts, config_sha256, started_at)
		 VALUES ($1, $2, 'running', 1, $3, now())
		 ON CONFLICT (run_id, name) DO UPDATE SET
		     status = 'running', attempts = stages.attempts + 1, config_sha256 = EXCLUDED.config_sha256,
		     started_at = coalesce(stages.started_at, EXCLUDED.started_at), finished_at = NULL, error = NULL`,
		run, stage, configSHA)
	if err != nil {
		return fmt.Errorf("postgres: begin stage %s/%s: %w", run, stage, translate(err))
	}
	return nil
}

// FinishStage records a stage's result (JSON) and, for a training stage, its
// final checkpoint.
func (db *DB) FinishStage(ctx context.Context, run, stage string, result []byte, checkpointKey, checkpointSHA string) error {
	tag, err := db.pool.Exec(ctx,
		`UPDATE stages SET status = 'succeeded', result = $3, checkpoint_key = nullif($4, ''),
		     checkpoint_sha256 = nullif($5, ''), finished_at = now(), error = NULL
		 WHERE run_id = $1 AND name = $2`, run, stage, result, checkpointKey, checkpointSHA)
	if err != nil {
		return fmt.Errorf("postgres: finish stage %s/%s: %w", run, stage, translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: finish stage %s/%s: not begun: %w", run, stage, errkind.NotFound)
	}
	return nil
}

// EndStage records a stage that ended without a result: failed (with the
// error), cancelled, waiting or skipped. A stage that succeeded keeps its
// record (only a status of succeeded, as a gate's approval, replaces it).
func (db *DB) EndStage(ctx context.Context, run, stage, status, errText string) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO stages (run_id, name, status, error, finished_at) VALUES ($1, $2, $3, nullif($4, ''), now())
		 ON CONFLICT (run_id, name) DO UPDATE SET status = EXCLUDED.status, error = EXCLUDED.error,
		     finished_at = CASE WHEN EXCLUDED.status = 'waiting' THEN NULL ELSE now() END
		 WHERE stages.status <> 'succeeded' OR EXCLUDED.status = 'succeeded'`,
		run, stage, status, errText)
	if err != nil {
		return fmt.Errorf("postgres: stage %s/%s %s: %w", run, stage, status, translate(err))
	}
	return nil
}

const stageColumns = `s.name, s.status, s.attempts, s.result, coalesce(s.config_sha256, ''), coalesce(l.name, ''),
	coalesce(s.checkpoint_key, ''), coalesce(s.checkpoint_sha256, ''), coalesce(s.error, ''), s.started_at, s.finished_at`

func scanStage(row pgx.Row) (Stage, error) {
	var s Stage
	var result []byte
	err := row.Scan(&s.Name, &s.Status, &s.Attempts, &result, &s.ConfigSHA256, &s.Snapshot,
		&s.CheckpointKey, &s.CheckpointSHA, &s.Error, &s.StartedAt, &s.FinishedAt)
	s.Result = result
	return s, err
}

// GetStage reads one stage's record (errkind.NotFound before it began).
func (db *DB) GetStage(ctx context.Context, run, stage string) (Stage, error) {
	s, err := scanStage(db.pool.QueryRow(ctx, "SELECT "+stageColumns+
		" FROM stages s LEFT JOIN label_snapshots l ON l.id = s.snapshot_id WHERE s.run_id = $1 AND s.name = $2", run, stage))
	if err != nil {
		return Stage{}, fmt.Errorf("postgres: stage %s/%s: %w", run, stage, translate(err))
	}
	return s, nil
}

// Stages lists a run's stages in the order they began.
func (db *DB) Stages(ctx context.Context, run string) ([]Stage, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+stageColumns+
		" FROM stages s LEFT JOIN label_snapshots l ON l.id = s.snapshot_id WHERE s.run_id = $1 ORDER BY s.started_at NULLS LAST, s.name", run)
	if err != nil {
		return nil, fmt.Errorf("postgres: stages of %s: %w", run, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Stage, error) { return scanStage(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: stages of %s: %w", run, err)
	}
	return out, nil
}
