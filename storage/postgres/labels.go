package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/preference"
)

// ImportSource is what Import reads: the validating reader of preference.
type ImportSource interface {
	Next() (preference.Record, error)
	Refused() bool
}

// ImportInfo describes the file being imported.
type ImportInfo struct {
	Name   string
	Format preference.Format
	// FileSHA256 is computed by the caller as it reads (see HashingReader).
	FileSHA256 func() [32]byte
	DryRun     bool
	// HeldoutFraction is the share of new prompts held out, drawn from each
	// prompt's hash as data import draws it (dataset.SplitOf); a prompt
	// stored before keeps its split.
	HeldoutFraction float64
}

// ImportResult counts what an import did (or, dry, would do).
type ImportResult struct {
	ImportID        int64 `json:"import_id,omitempty"`
	Accepted        int64 `json:"accepted"`          // rows that passed validation
	Flagged         int64 `json:"flagged"`           // of those, kept with flags
	DuplicateInFile int64 `json:"duplicate_in_file"` // same content as an earlier row of the file
	AlreadyPresent  int64 `json:"already_present"`   // stored by an earlier import
	Inserted        int64 `json:"inserted"`          // new comparisons
	Refused         bool  `json:"refused"`
	DryRun          bool  `json:"dry_run"`
}

// ErrImportRefused: the file has problems that refuse it; nothing was
// written.
var ErrImportRefused = errors.New("import refused")

// Import loads every accepted record of src in one transaction: rows are
// streamed with COPY into a temporary staging table, then labelers,
// prompts, responses and comparisons are inserted set-wise. If src refuses
// the file, or on any error, nothing is written. Re-importing content that
// is stored already adds nothing.
func (db *DB) Import(ctx context.Context, src ImportSource, info ImportInfo) (ImportResult, error) {
	res := ImportResult{DryRun: info.DryRun}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("postgres: import: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit

	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE import_staging (
		line int NOT NULL,
		labeler text NOT NULL,
		prompt text NOT NULL,
		prompt_sha bytea NOT NULL,
		prompt_norm bytea NOT NULL,
		prompt_split text NOT NULL,
		prompt_turns jsonb,
		responses text[] NOT NULL,
		response_shas bytea[] NOT NULL,
		response_norms bytea[] NOT NULL,
		response_chars int[] NOT NULL,
		ranks smallint[] NOT NULL,
		content_sha bytea NOT NULL,
		flags text[] NOT NULL,
		order_known boolean NOT NULL
	) ON COMMIT DROP`); err != nil {
		return res, fmt.Errorf("postgres: import: staging table: %w", err)
	}
	rows := &stagingRows{src: src, heldout: info.HeldoutFraction}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"import_staging"},
		[]string{"line", "labeler", "prompt", "prompt_sha", "prompt_norm", "prompt_split", "prompt_turns", "responses", "response_shas", "response_norms", "response_chars", "ranks", "content_sha", "flags", "order_known"}, rows)
	res.Accepted, res.Flagged = rows.accepted, rows.flagged
	// A refusal or a read error ends the COPY with the reader's error, which
	// pgx reports as Postgres's "COPY from stdin failed": ask the reader.
	switch {
	case src.Refused():
		res.Refused = true
		return res, ErrImportRefused
	case rows.err != nil:
		return res, fmt.Errorf("postgres: import: %w", rows.err)
	case err != nil:
		return res, fmt.Errorf("postgres: import: copy: %w", err)
	}
	n := rows.accepted

	var sum [32]byte
	if info.FileSHA256 != nil {
		sum = info.FileSHA256()
	}
	if err := tx.QueryRow(ctx,
		`INSERT INTO imports (name, format, file_sha256, rows_read, inserted) VALUES ($1, $2, $3, $4, 0) RETURNING id`,
		info.Name, string(info.Format), sum[:], n).Scan(&res.ImportID); err != nil {
		return res, fmt.Errorf("postgres: import: record import: %w", err)
	}
	steps := []struct {
		name string
		sql  string
		args []any
	}{
		{"labelers", `INSERT INTO labelers (name, kind)
			SELECT DISTINCT labeler, 'imported' FROM import_staging
			ON CONFLICT (name) DO NOTHING`, nil},
		{"prompts", `INSERT INTO prompts (text, sha256, norm_sha256, split, turns, source)
			SELECT DISTINCT ON (prompt_sha) prompt, prompt_sha, prompt_norm, prompt_split, prompt_turns, $1 FROM import_staging
			ORDER BY prompt_sha
			ON CONFLICT (sha256) DO UPDATE SET turns = EXCLUDED.turns
			WHERE prompts.turns IS NULL AND EXCLUDED.turns IS NOT NULL`, []any{fmt.Sprintf("import:%d", res.ImportID)}},
		{"responses", `INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
			SELECT DISTINCT ON (p.id, r.sha) p.id, r.text, r.sha, r.norm, r.chars, $1
			FROM import_staging s
			JOIN prompts p ON p.sha256 = s.prompt_sha
			CROSS JOIN LATERAL unnest(s.responses, s.response_shas, s.response_norms, s.response_chars) AS r (text, sha, norm, chars)
			ORDER BY p.id, r.sha
			ON CONFLICT (prompt_id, sha256) DO NOTHING`, []any{fmt.Sprintf("import:%d", res.ImportID)}},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return res, fmt.Errorf("postgres: import: %s: %w", st.name, err)
		}
	}
	var distinct int64
	if err := tx.QueryRow(ctx, "SELECT count(DISTINCT content_sha) FROM import_staging").Scan(&distinct); err != nil {
		return res, fmt.Errorf("postgres: import: %w", err)
	}
	// Ids follow the file's line order (the first line of repeated content).
	tag, err := tx.Exec(ctx, `INSERT INTO comparisons
			(prompt_id, labeler_id, response_ids, ranks, content_sha256, flags, order_known, source, import_id, import_line)
		SELECT p.id, l.id,
			(SELECT array_agg(r.id ORDER BY u.ord)
			   FROM unnest(s.response_shas) WITH ORDINALITY AS u (sha, ord)
			   JOIN responses r ON r.prompt_id = p.id AND r.sha256 = u.sha),
			s.ranks, s.content_sha, s.flags, s.order_known, $1, $2, s.line
		FROM (SELECT DISTINCT ON (content_sha) * FROM import_staging ORDER BY content_sha, line) s
		JOIN prompts p ON p.sha256 = s.prompt_sha
		JOIN labelers l ON l.name = s.labeler
		ORDER BY s.line
		ON CONFLICT (content_sha256) DO NOTHING`, fmt.Sprintf("import:%d", res.ImportID), res.ImportID)
	if err != nil {
		return res, fmt.Errorf("postgres: import: comparisons: %w", translate(err))
	}
	res.Inserted = tag.RowsAffected()
	res.DuplicateInFile = n - distinct
	res.AlreadyPresent = distinct - res.Inserted
	if _, err := tx.Exec(ctx, "UPDATE imports SET inserted = $1 WHERE id = $2", res.Inserted, res.ImportID); err != nil {
		return res, fmt.Errorf("postgres: import: %w", err)
	}
	if info.DryRun {
		return res, nil // the deferred rollback discards everything
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("postgres: import: commit: %w", err)
	}
	return res, nil
}

// stagingRows adapts the record reader to pgx.CopyFromSource, computing the
// hashes as rows stream by.
type stagingRows struct {
	src      ImportSource
	heldout  float64 // share of prompts held out
	cur      preference.Record
	err      error
	accepted int64
	flagged  int64
}

func (s *stagingRows) Next() bool {
	rec, err := s.src.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = err
		}
		return false
	}
	s.cur = rec
	s.accepted++
	if len(rec.Flags) > 0 {
		s.flagged++
	}
	return true
}

func (s *stagingRows) Values() ([]any, error) {
	r := s.cur
	psum, pnorm := sha256.Sum256([]byte(r.Prompt)), preference.NormHash(r.Prompt)
	shas := make([][]byte, len(r.Responses))
	norms := make([][]byte, len(r.Responses))
	chars := make([]int32, len(r.Responses))
	for i, text := range r.Responses {
		sum, norm := sha256.Sum256([]byte(text)), preference.NormHash(text)
		shas[i], norms[i], chars[i] = sum[:], norm[:], int32(utf8.RuneCountInString(text))
	}
	ranks := make([]int16, len(r.Ranks))
	for i, rk := range r.Ranks {
		ranks[i] = int16(rk)
	}
	flags := make([]string, len(r.Flags))
	for i, f := range r.Flags {
		flags[i] = string(f)
	}
	content := r.ContentHash()
	var turns any // NULL: a plain prompt
	// An HH transcript's prompt (of --format hh, or written into a pairwise
	// or ranking file) keeps its text and gets its turns, as data import
	// stores it, so that templates render the conversation, not the
	// transcript inside a new one.
	if t, err := chat.ParseHHPrompt(r.Prompt); err == nil {
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		turns = b
	}
	split := string(dataset.SplitOf(r.Prompt, s.heldout))
	return []any{r.Line, r.Labeler, r.Prompt, psum[:], pnorm[:], split, turns, r.Responses, shas, norms, chars, ranks, content[:], flags, r.OrderKnown}, nil
}

func (s *stagingRows) Err() error { return s.err }
