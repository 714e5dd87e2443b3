package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/storage"
)

// SnapshotFilter selects the current (not superseded) comparisons a
// snapshot freezes. The zero value selects all of them.
type SnapshotFilter struct {
	Labelers        []string   `json:"labelers,omitempty"`         // only these labelers
	ExcludeLabelers []string   `json:"exclude_labelers,omitempty"` // not these
	ExcludeFlagged  bool       `json:"exclude_flagged,omitempty"`  // leave out rows kept with flags
	Split           string     `json:"split,omitempty"`            // prompts of this split only
	Since           *time.Time `json:"since,omitempty"`
	Until           *time.Time `json:"until,omitempty"`
	Batch           string     `json:"batch,omitempty"` // labels of this labeling batch only
}

// SnapshotWhere freezes the comparisons that match f under a new name and
// records the filter with it. Naming a labeler that does not exist is an
// error, so a typo cannot silently select everything or nothing.
func (db *DB) SnapshotWhere(ctx context.Context, name string, f SnapshotFilter) (Snapshot, error) {
	var s Snapshot
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		names := append(append([]string{}, f.Labelers...), f.ExcludeLabelers...)
		var unknown []string
		if err := tx.QueryRow(ctx,
			`SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM unnest($1::text[]) AS n
			 WHERE NOT EXISTS (SELECT 1 FROM labelers l WHERE l.name = n)`, names).Scan(&unknown); err != nil {
			return err
		}
		if len(unknown) > 0 {
			return fmt.Errorf("no labeler named %q: %w", unknown[0], storage.ErrNotFound)
		}
		var ids []int64
		if err := tx.QueryRow(ctx, `
			SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}')
			FROM current_comparisons c
			JOIN labelers l ON l.id = c.labeler_id
			JOIN prompts p ON p.id = c.prompt_id
			WHERE (coalesce(cardinality($1::text[]), 0) = 0 OR l.name = ANY ($1))
			  AND NOT (l.name = ANY (coalesce($2::text[], '{}')))
			  AND (NOT $3 OR cardinality(c.flags) = 0)
			  AND ($4 = '' OR p.split = $4)
			  AND ($5::timestamptz IS NULL OR c.created_at >= $5)
			  AND ($6::timestamptz IS NULL OR c.created_at < $6)
			  AND ($7 = '' OR c.batch_id = (SELECT id FROM labeling_batches WHERE name = $7))`,
			f.Labelers, f.ExcludeLabelers, f.ExcludeFlagged, f.Split, f.Since, f.Until, f.Batch).Scan(&ids); err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("the filter selects no comparisons; loosen it or import labels first: %w", storage.ErrNotFound)
		}
		filter, err := json.Marshal(f)
		if err != nil {
			return err
		}
		s = Snapshot{Name: name, ComparisonIDs: ids, SHA256: SnapshotHash(ids)}
		return tx.QueryRow(ctx,
			"INSERT INTO label_snapshots (name, comparison_ids, sha256, filter) VALUES ($1, $2, $3, $4) RETURNING id",
			name, ids, s.SHA256[:], filter).Scan(&s.ID)
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", name, translate(err))
	}
	return s, nil
}

// ExportRow is one comparison of a snapshot with its texts.
type ExportRow struct {
	ID          int64
	Prompt      string
	Responses   []string // shown order
	Ranks       []int16
	Labeler     string
	Split       string  // the prompt's split
	ResponseIDs []int64 // shown order
}

// ExportSnapshot streams a snapshot's comparisons in id order to fn, after
// checking the snapshot's hash.
func (db *DB) ExportSnapshot(ctx context.Context, name string, fn func(ExportRow) error) error {
	snap, err := db.Snapshot(ctx, name)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(ctx, `
		SELECT c.id, p.text,
		       (SELECT array_agg(r.text ORDER BY u.ord)
		          FROM unnest(c.response_ids) WITH ORDINALITY AS u (rid, ord)
		          JOIN responses r ON r.id = u.rid),
		       c.ranks, l.name, p.split, c.response_ids
		FROM unnest($1::bigint[]) AS s (id)
		JOIN comparisons c ON c.id = s.id
		JOIN prompts p ON p.id = c.prompt_id
		JOIN labelers l ON l.id = c.labeler_id
		ORDER BY c.id`, snap.ComparisonIDs)
	if err != nil {
		return fmt.Errorf("postgres: export %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ExportRow
		if err := rows.Scan(&r.ID, &r.Prompt, &r.Responses, &r.Ranks, &r.Labeler, &r.Split, &r.ResponseIDs); err != nil {
			return fmt.Errorf("postgres: export %s: %w", name, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: export %s: %w", name, err)
	}
	return nil
}

// SetStageSnapshot records the label snapshot a run's stage (the reward
// model) was trained on.
func (db *DB) SetStageSnapshot(ctx context.Context, run, stage, snapshot string) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE stages SET snapshot_id = (SELECT id FROM label_snapshots WHERE name = $3)
		WHERE run_id = $1 AND name = $2 AND EXISTS (SELECT 1 FROM label_snapshots WHERE name = $3)`,
		run, stage, snapshot)
	if err != nil {
		return fmt.Errorf("postgres: set snapshot of %s/%s: %w", run, stage, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set snapshot of %s/%s to %q: stage or snapshot: %w", run, stage, snapshot, storage.ErrNotFound)
	}
	return nil
}

// Lineage is the label data behind one stage of a run.
type Lineage struct {
	Run         string          `json:"run"`
	Stage       string          `json:"stage"`
	Snapshot    string          `json:"snapshot"`
	SHA256      string          `json:"sha256"`
	Comparisons int64           `json:"comparisons"`
	Flagged     int64           `json:"flagged"`
	Filter      json.RawMessage `json:"filter"`
	CreatedAt   time.Time       `json:"created_at"`
	Labelers    []LabelerCount  `json:"labelers"`
	Imports     []ImportSummary `json:"imports"`
}

// LabelerCount is how many comparisons of a snapshot one labeler made.
type LabelerCount struct {
	Labeler     string `json:"labeler"`
	Comparisons int64  `json:"comparisons"`
}

// ImportSummary names an import that contributed to a snapshot.
type ImportSummary struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Format      string `json:"format"`
	FileSHA256  string `json:"file_sha256"`
	Comparisons int64  `json:"comparisons"`
}

// Lineage returns, for each stage of run that records a snapshot, the
// snapshot, its hash, and the labelers and imports behind it.
func (db *DB) Lineage(ctx context.Context, run string) ([]Lineage, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT st.name, s.id, s.name, encode(s.sha256, 'hex'), cardinality(s.comparison_ids), s.filter, s.created_at
		FROM stages st JOIN label_snapshots s ON s.id = st.snapshot_id
		WHERE st.run_id = $1 ORDER BY st.name`, run)
	if err != nil {
		return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
	}
	type stageSnap struct {
		Lineage
		id int64
	}
	var out []Lineage
	var snaps []stageSnap
	for rows.Next() {
		var s stageSnap
		s.Run = run
		if err := rows.Scan(&s.Stage, &s.id, &s.Snapshot, &s.SHA256, &s.Comparisons, &s.Filter, &s.CreatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		snaps = append(snaps, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
	}
	if len(snaps) == 0 {
		var exists bool
		if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)", run).Scan(&exists); err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		if !exists {
			return nil, fmt.Errorf("postgres: lineage: run %q: %w", run, storage.ErrNotFound)
		}
	}
	for _, s := range snaps {
		l := s.Lineage
		labelers, err := db.pool.Query(ctx, `
			SELECT l.name, count(*) FROM label_snapshots s, unnest(s.comparison_ids) AS x (id)
			JOIN comparisons c ON c.id = x.id JOIN labelers l ON l.id = c.labeler_id
			WHERE s.id = $1 GROUP BY l.name ORDER BY count(*) DESC, l.name`, s.id)
		if err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		if l.Labelers, err = pgx.CollectRows(labelers, pgx.RowToStructByPos[LabelerCount]); err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		imports, err := db.pool.Query(ctx, `
			SELECT i.id, i.name, i.format, encode(i.file_sha256, 'hex'), count(*)
			FROM label_snapshots s, unnest(s.comparison_ids) AS x (id)
			JOIN comparisons c ON c.id = x.id JOIN imports i ON i.id = c.import_id
			WHERE s.id = $1 GROUP BY i.id ORDER BY i.id`, s.id)
		if err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		if l.Imports, err = pgx.CollectRows(imports, pgx.RowToStructByPos[ImportSummary]); err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		if err := db.pool.QueryRow(ctx, `
			SELECT count(*) FROM label_snapshots s, unnest(s.comparison_ids) AS x (id)
			JOIN comparisons c ON c.id = x.id WHERE s.id = $1 AND cardinality(c.flags) > 0`, s.id).Scan(&l.Flagged); err != nil {
			return nil, fmt.Errorf("postgres: lineage %s: %w", run, err)
		}
		out = append(out, l)
	}
	return out, nil
}
