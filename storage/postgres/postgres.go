// Package postgres stores preference data, label snapshots, runs, stages,
// metrics and the audit log in Postgres, connected as the runtime role; the
// schema and its migrations are in the subpackage migrations, applied by the
// owner. All SQL is parameterised.
package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage"
	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

// DB is the InstructFlow database.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects to url as the runtime role (postgres.url), checks that the
// server answers and that the schema is current. It applies no migration:
// that is the owner's job (`instructflow db migrate`), and a pending one
// gets a message that says so. A wrong password or an unreachable server
// gets a message that says which.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, explain(err))
	}
	db := &DB{pool: pool}
	if err := db.checkSchema(ctx, cfg.ConnConfig.Database); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// ErrSchemaPending says that the database needs `instructflow db migrate`.
var ErrSchemaPending = errors.New("the schema is not current")

// checkSchema refuses a database whose schema is older than this build's.
// A newer one is accepted: migrations only add, so a build that is rolled
// out after its migrations ran keeps working until it is replaced.
func (db *DB) checkSchema(ctx context.Context, name string) error {
	v, err := db.SchemaVersion(ctx)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42501") { // undefined_table, insufficient_privilege
		return fmt.Errorf("postgres: database %s has no InstructFlow schema this role may read (%s): run `instructflow db migrate` (as the owner, postgres.owner_url): %w",
			name, pgErr.Message, ErrSchemaPending)
	}
	if err != nil {
		return err
	}
	if want := migrations.Latest(); v < want {
		return fmt.Errorf("postgres: database %s has schema version %d, this build needs %d: run `instructflow db migrate` (as the owner, postgres.owner_url): %w",
			name, v, want, ErrSchemaPending)
	}
	return nil
}

// explain adds the likely fix to the connection errors users hit most.
func explain(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		return fmt.Errorf("%w (check the user and password in postgres.url)", err)
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		return fmt.Errorf("%w (create the database or fix its name in postgres.url)", err)
	case strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("%w (is Postgres running? start the local stack with `instructflow dev`)", err)
	}
	return err
}

// Close releases the connections.
func (db *DB) Close() { db.pool.Close() }

// SchemaVersion returns the number of the last applied migration.
func (db *DB) SchemaVersion(ctx context.Context) (int32, error) {
	var v int32
	err := db.pool.QueryRow(ctx, "SELECT version FROM "+migrations.VersionTable).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return v, nil
}

// Comparison is a stored ranking.
type Comparison struct {
	ID          int64
	PromptID    int64
	LabelerID   int64
	ResponseIDs []int64 // in shown order
	Ranks       []int16
	Supersedes  *int64
	Hash        [32]byte
}

// InsertRanking stores r (its labeler, prompt and responses as needed) as one
// comparison, in one transaction. If the same content was stored before, it
// returns that comparison's id and created=false. supersedes, when not zero,
// names the comparison this one corrects.
func (db *DB) InsertRanking(ctx context.Context, r preference.Ranking, source string, supersedes int64) (id int64, created bool, err error) {
	if err := r.Validate(); err != nil {
		return 0, false, err
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		hash := r.ContentHash()
		err := tx.QueryRow(ctx, "SELECT id FROM comparisons WHERE content_sha256 = $1", hash[:]).Scan(&id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		labeler, err := upsertID(ctx, tx,
			"INSERT INTO labelers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id", []any{r.Labeler},
			"SELECT id FROM labelers WHERE name = $1", r.Labeler)
		if err != nil {
			return fmt.Errorf("labeler: %w", err)
		}
		psum, pnorm := sha256.Sum256([]byte(r.Prompt)), preference.NormHash(r.Prompt)
		prompt, err := upsertID(ctx, tx,
			"INSERT INTO prompts (text, sha256, norm_sha256) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING RETURNING id",
			[]any{r.Prompt, psum[:], pnorm[:]},
			"SELECT id FROM prompts WHERE sha256 = $1", psum[:])
		if err != nil {
			return fmt.Errorf("prompt: %w", err)
		}
		respIDs := make([]int64, len(r.Responses))
		for i, text := range r.Responses {
			sum, norm := sha256.Sum256([]byte(text)), preference.NormHash(text)
			respIDs[i], err = upsertID(ctx, tx,
				`INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source) VALUES ($1, $2, $3, $4, $5, $6)
				 ON CONFLICT (prompt_id, sha256) DO NOTHING RETURNING id`,
				[]any{prompt, text, sum[:], norm[:], utf8.RuneCountInString(text), source},
				"SELECT id FROM responses WHERE prompt_id = $1 AND sha256 = $2", prompt, sum[:])
			if err != nil {
				return fmt.Errorf("response %d: %w", i, err)
			}
		}
		ranks := make([]int16, len(r.Ranks))
		for i, rk := range r.Ranks {
			ranks[i] = int16(rk)
		}
		var sup *int64
		if supersedes != 0 {
			sup = &supersedes
		}
		created = true
		return tx.QueryRow(ctx,
			`INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, supersedes, source)
			 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			prompt, labeler, respIDs, ranks, hash[:], sup, source).Scan(&id)
	})
	if err != nil {
		return 0, false, fmt.Errorf("postgres: insert ranking: %w", translate(err))
	}
	return id, created, nil
}

// upsertID runs an INSERT ... ON CONFLICT DO NOTHING RETURNING id and, when
// the row existed, the SELECT that finds it.
func upsertID(ctx context.Context, tx pgx.Tx, insert string, insertArgs []any, find string, findArgs ...any) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, insert, insertArgs...).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, find, findArgs...).Scan(&id)
	}
	return id, err
}

// Comparison reads one comparison.
func (db *DB) Comparison(ctx context.Context, id int64) (Comparison, error) {
	var c Comparison
	var hash []byte
	err := db.pool.QueryRow(ctx,
		`SELECT id, prompt_id, labeler_id, response_ids, ranks, supersedes, content_sha256
		 FROM comparisons WHERE id = $1`, id).
		Scan(&c.ID, &c.PromptID, &c.LabelerID, &c.ResponseIDs, &c.Ranks, &c.Supersedes, &hash)
	if err != nil {
		return Comparison{}, fmt.Errorf("postgres: comparison %d: %w", id, translate(err))
	}
	copy(c.Hash[:], hash)
	return c, nil
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

// SetStageStatus records a stage's status, creating the stage row on first
// use; started_at and finished_at follow the status.
func (db *DB) SetStageStatus(ctx context.Context, run, stage, status string) error {
	if err := storage.ValidateID("stage", stage); err != nil {
		return fmt.Errorf("postgres: set stage: %w", err)
	}
	_, err := db.pool.Exec(ctx,
		`INSERT INTO stages (run_id, name, status, started_at, finished_at)
		 VALUES ($1, $2, $3,
		         CASE WHEN $3 = 'running' THEN now() END,
		         CASE WHEN $3 IN ('succeeded', 'failed', 'skipped') THEN now() END)
		 ON CONFLICT (run_id, name) DO UPDATE SET
		     status = EXCLUDED.status,
		     started_at = coalesce(stages.started_at, EXCLUDED.started_at),
		     finished_at = EXCLUDED.finished_at`, run, stage, status)
	if err != nil {
		return fmt.Errorf("postgres: set stage %s/%s %s: %w", run, stage, status, translate(err))
	}
	return nil
}

// StageStatus returns a stage's status.
func (db *DB) StageStatus(ctx context.Context, run, stage string) (string, error) {
	var status string
	err := db.pool.QueryRow(ctx, "SELECT status FROM stages WHERE run_id = $1 AND name = $2", run, stage).Scan(&status)
	if err != nil {
		return "", fmt.Errorf("postgres: stage %s/%s: %w", run, stage, translate(err))
	}
	return status, nil
}

// RecordMetrics stores a step's metrics in one statement. Recording the same
// step again (a retried activity) keeps the first values.
func (db *DB) RecordMetrics(ctx context.Context, run, stage string, step int64, values map[string]float64) error {
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	vals := make([]float64, len(names))
	for i, n := range names {
		vals[i] = values[n]
	}
	_, err := db.pool.Exec(ctx,
		`INSERT INTO metrics (run_id, stage, step, name, value)
		 SELECT $1, $2, $3, n, v FROM unnest($4::text[], $5::float8[]) AS m (n, v)
		 ON CONFLICT DO NOTHING`, run, stage, step, names, vals)
	if err != nil {
		return fmt.Errorf("postgres: record metrics %s/%s step %d: %w", run, stage, step, translate(err))
	}
	return nil
}

// Metric is one recorded value.
type Metric struct {
	Step  int64
	Name  string
	Value float64
}

// Metrics returns a stage's metrics ordered by step and name.
func (db *DB) Metrics(ctx context.Context, run, stage string) ([]Metric, error) {
	rows, err := db.pool.Query(ctx,
		"SELECT step, name, value FROM metrics WHERE run_id = $1 AND stage = $2 ORDER BY step, name", run, stage)
	if err != nil {
		return nil, fmt.Errorf("postgres: metrics %s/%s: %w", run, stage, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Metric])
	if err != nil {
		return nil, fmt.Errorf("postgres: metrics %s/%s: %w", run, stage, err)
	}
	return out, nil
}

// Audit appends an entry to the audit log.
func (db *DB) Audit(ctx context.Context, action, entity, entityID string, detail []byte) error {
	if detail == nil {
		detail = []byte("{}")
	}
	_, err := db.pool.Exec(ctx,
		"INSERT INTO audit_log (action, entity, entity_id, detail) VALUES ($1, $2, $3, $4)",
		action, entity, entityID, detail)
	if err != nil {
		return fmt.Errorf("postgres: audit %s %s: %w", action, entity, err)
	}
	return nil
}

// translate maps driver errors to the domain's sentinels.
func translate(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errkind.NotFound
	case errors.As(err, &pgErr) && pgErr.Code == "23001": // restrict_violation from refuse_change()
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.Immutable)
	}
	return err
}
