package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

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
