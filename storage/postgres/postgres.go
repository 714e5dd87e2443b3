// Package postgres stores preference data, label snapshots, runs, stages,
// metrics and the audit log in Postgres, connected as the runtime role; the
// schema and its migrations are in the subpackage migrations, applied by the
// owner. All SQL is parameterised.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/instructflow/instructflow/errkind"
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
	case errors.As(err, new(*pgconn.ConnectError)):
		return fmt.Errorf("%w: %w", errkind.Unavailable, err)
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

// translate maps driver errors to the domain's sentinels.
// texts runs a query of one text column and returns its rows; what names
// the query in errors.
func (db *DB) texts(ctx context.Context, what, sql string, args ...any) ([]string, error) {
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, translate(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, translate(err))
	}
	return out, nil
}

func translate(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errkind.NotFound
	case errors.As(err, &pgErr) && pgErr.Code == "23001": // restrict_violation from refuse_change()
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.Immutable)
	case errors.As(err, &pgErr) && pgErr.Code == "IFR01": // refuse_foreign_responses(): responses not of the prompt
		return errkind.BadInputf("%s", pgErr.Message)
	case errors.As(err, &pgErr) && pgErr.Code == "IFR02": // require_labeler(): no such session
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.Unauthenticated)
	case errors.As(err, &pgErr) && pgErr.Code == "P0002": // claim_item(): no such batch
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.NotFound)
	case errors.As(err, &pgErr) && pgErr.Code == "IFR03": // not the session labeler's assignment
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.Forbidden)
	case errors.As(err, &pgErr) && pgErr.Code == "IFR04": // assignment done or lapsed
		return fmt.Errorf("%s: %w", pgErr.Message, errkind.Conflict)
	}
	return err
}
