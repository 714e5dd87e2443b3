package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/chat"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

// Snapshot is a frozen set of comparisons.
type Snapshot struct {
	ID            int64
	Name          string
	ComparisonIDs []int64 // sorted ascending
	// SHA256 covers the frozen content: each comparison's id, labeler, prompt
	// (text and split), responses in shown order and ranks (the format is in
	// migrations/004_roles.sql). Reading a snapshot recomputes it.
	SHA256 [32]byte
	// Filter is what SnapshotWhere selected with (zero for a list of ids).
	Filter SnapshotFilter
}

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

// Equal reports whether f and g select the same comparisons (the order of
// labeler names does not matter).
func (f SnapshotFilter) Equal(g SnapshotFilter) bool {
	sameSet := func(a, b []string) bool {
		a, b = slices.Clone(a), slices.Clone(b)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(slices.Compact(a), slices.Compact(b))
	}
	sameTime := func(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }
	return sameSet(f.Labelers, g.Labelers) && sameSet(f.ExcludeLabelers, g.ExcludeLabelers) &&
		f.ExcludeFlagged == g.ExcludeFlagged && f.Split == g.Split && f.Batch == g.Batch &&
		sameTime(f.Since, g.Since) && sameTime(f.Until, g.Until)
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
			return fmt.Errorf("no labeler named %q: %w", unknown[0], errkind.NotFound)
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
			return fmt.Errorf("the filter selects no comparisons; loosen it or import labels first: %w", errkind.NotFound)
		}
		var err error
		s, err = insertSnapshot(ctx, tx, name, ids, f)
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", name, translate(err))
	}
	return s, nil
}

// insertSnapshot hashes the content of the (sorted, existing) ids and stores
// the snapshot.
func insertSnapshot(ctx context.Context, tx pgx.Tx, name string, ids []int64, f SnapshotFilter) (Snapshot, error) {
	s := Snapshot{Name: name, ComparisonIDs: ids, Filter: f}
	h := newContentHash(ids)
	if err := snapshotRows(ctx, tx, ids, func(r ExportRow) error { return h.add(r) }); err != nil {
		return Snapshot{}, err
	}
	var err error
	if s.SHA256, err = h.sum(); err != nil {
		return Snapshot{}, err
	}
	filter, err := json.Marshal(f)
	if err != nil {
		return Snapshot{}, err
	}
	err = tx.QueryRow(ctx,
		"INSERT INTO label_snapshots (name, comparison_ids, sha256, filter) VALUES ($1, $2, $3, $4) RETURNING id",
		name, ids, s.SHA256[:], filter).Scan(&s.ID)
	return s, err
}

// Snapshot reads a snapshot by name and verifies its hash against the
// content it froze; a mismatch is errkind.Corrupt.
func (db *DB) Snapshot(ctx context.Context, name string) (Snapshot, error) {
	s, err := db.snapshotRecord(ctx, name)
	if err != nil {
		return Snapshot{}, err
	}
	h := newContentHash(s.ComparisonIDs)
	if err := snapshotRows(ctx, db.pool, s.ComparisonIDs, func(r ExportRow) error { return h.add(r) }); err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", name, err)
	}
	if err := h.check(s.SHA256); err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", name, err)
	}
	return s, nil
}

// snapshotRecord reads a snapshot's row, without checking its content.
func (db *DB) snapshotRecord(ctx context.Context, name string) (Snapshot, error) {
	s := Snapshot{Name: name}
	var hash, filter []byte
	err := db.pool.QueryRow(ctx,
		"SELECT id, comparison_ids, sha256, filter FROM label_snapshots WHERE name = $1", name).
		Scan(&s.ID, &s.ComparisonIDs, &hash, &filter)
	if err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: %w", name, translate(err))
	}
	copy(s.SHA256[:], hash)
	if err := json.Unmarshal(filter, &s.Filter); err != nil {
		return Snapshot{}, fmt.Errorf("postgres: snapshot %q: filter: %w", name, err)
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
	// Turns are the prompt's, when it is a conversation (not hashed: the
	// text determines them).
	Turns []chat.Message
	// Judged is what a labeler said besides the ranks (the labeling app's
	// ratings and flags, shown order; not hashed).
	Judged preference.Judged
}

// ExportSnapshot streams a snapshot's comparisons in id order to fn, after
// checking the snapshot's hash against its content (fn sees no row of a
// snapshot that fails the check).
func (db *DB) ExportSnapshot(ctx context.Context, name string, fn func(ExportRow) error) error {
	snap, err := db.Snapshot(ctx, name)
	if err != nil {
		return err
	}
	// The rows are read a second time: comparisons are immutable and the
	// runtime role may not change their texts, so this stream is the one
	// just verified, and re-hashing it makes sure.
	h := newContentHash(snap.ComparisonIDs)
	err = snapshotRows(ctx, db.pool, snap.ComparisonIDs, func(r ExportRow) error {
		if err := h.add(r); err != nil {
			return err
		}
		return fn(r)
	})
	if err == nil {
		err = h.check(snap.SHA256)
	}
	if err != nil {
		return fmt.Errorf("postgres: export %s: %w", name, err)
	}
	return nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// snapshotRows streams the comparisons of ids (sorted) with their texts in
// id order.
func snapshotRows(ctx context.Context, q querier, ids []int64, fn func(ExportRow) error) error {
	rows, err := q.Query(ctx, `
		SELECT c.id, p.text,
		       (SELECT coalesce(array_agg(r.text ORDER BY u.ord), '{}')
		          FROM unnest(c.response_ids) WITH ORDINALITY AS u (rid, ord)
		          JOIN responses r ON r.id = u.rid AND r.prompt_id = c.prompt_id),
		       c.ranks, l.name, p.split, c.response_ids, p.turns, c.ratings, c.response_flags
		FROM unnest($1::bigint[]) AS s (id)
		JOIN comparisons c ON c.id = s.id
		JOIN prompts p ON p.id = c.prompt_id
		JOIN labelers l ON l.id = c.labeler_id
		ORDER BY c.id`, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r ExportRow
		var turns []byte
		if err := rows.Scan(&r.ID, &r.Prompt, &r.Responses, &r.Ranks, &r.Labeler, &r.Split, &r.ResponseIDs, &turns,
			&r.Judged.Ratings, &r.Judged.Flags); err != nil {
			return err
		}
		if r.Turns, err = parseTurns(turns); err != nil {
			return fmt.Errorf("comparison %d: %w", r.ID, err)
		}
		// Stored before the database refused them (migration 008): a
		// response that is missing or another prompt's is not trained on.
		if len(r.Responses) != len(r.ResponseIDs) || len(r.Ranks) != len(r.ResponseIDs) {
			return errkind.BadInputf("comparison %d (labeler %s): %d of its %d response ids name responses to its prompt, with %d ranks; it cannot be trained on: make a snapshot without it (e.g. --exclude-labeler %s)",
				r.ID, r.Labeler, len(r.Responses), len(r.ResponseIDs), len(r.Ranks), r.Labeler)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
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
		return fmt.Errorf("postgres: set snapshot of %s/%s to %q: stage or snapshot: %w", run, stage, snapshot, errkind.NotFound)
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
			return nil, fmt.Errorf("postgres: lineage: run %q: %w", run, errkind.NotFound)
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
