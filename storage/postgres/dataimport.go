package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

// DatasetSource is what ImportDataset reads: the validating reader of
// package dataset.
type DatasetSource interface {
	Next() (dataset.Example, error)
	Refused() bool
}

// DatasetImportInfo describes the file being imported into a dataset.
type DatasetImportInfo struct {
	Dataset string
	Name    string // the file as given, "-" for stdin
	Format  dataset.Format
	// FileSHA256 is computed by the caller as it reads.
	FileSHA256 func() [32]byte
	DryRun     bool
	// SkipConflicts leaves out rows whose prompt is stored in the other
	// split, instead of refusing the file.
	SkipConflicts bool
}

// DatasetImportResult counts what an import did (or, dry, would do).
type DatasetImportResult struct {
	ImportID        int64 `json:"import_id,omitempty"`
	Accepted        int64 `json:"accepted"`          // rows that passed validation
	DuplicateInFile int64 `json:"duplicate_in_file"` // same content as an earlier row of the file
	AlreadyPresent  int64 `json:"already_present"`   // in the dataset from an earlier import
	Inserted        int64 `json:"inserted"`          // new rows of the dataset
	PromptsAdded    int64 `json:"prompts_added"`     // prompts no dataset or label had before
	// Rows inserted, by split.
	Train   int64 `json:"train"`
	Heldout int64 `json:"heldout"`
	// SplitConflicts are rows whose prompt is stored in the other split
	// (their first lines in Conflicts); they refuse the file unless skipped.
	SplitConflicts int64           `json:"split_conflicts"`
	Conflicts      []SplitConflict `json:"conflicts,omitempty"`
	Refused        bool            `json:"refused"`
	DryRun         bool            `json:"dry_run"`
}

// SplitConflict is a row whose prompt is stored in another split.
type SplitConflict struct {
	Line   int    `json:"line"`
	Split  string `json:"split"`  // the row's
	Stored string `json:"stored"` // the prompt's, stored before
}

// DatasetNamePattern is what a dataset's name must match (the schema's
// CHECK).
var DatasetNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// CheckDatasetName says what is wrong with a dataset name.
func CheckDatasetName(name string) error {
	if !DatasetNamePattern.MatchString(name) {
		return fmt.Errorf("dataset name %q: use 1 to 63 lower-case letters, digits, '_', '-' or '.', starting with a letter or digit", name)
	}
	return nil
}

// ImportDataset adds every accepted row of src to a dataset (created if
// new) in one transaction: rows stream with COPY into a staging table, then
// prompts, targets and dataset rows are inserted set-wise. A prompt stored
// before in the other split refuses the file (a prompt is never on both
// sides), unless info.SkipConflicts. If src refuses the file, or on any
// error, nothing is written. Importing content the dataset has adds
// nothing.
func (db *DB) ImportDataset(ctx context.Context, src DatasetSource, info DatasetImportInfo) (DatasetImportResult, error) {
	res := DatasetImportResult{DryRun: info.DryRun}
	if err := CheckDatasetName(info.Dataset); err != nil {
		return res, errkind.BadInputf("%v", err)
	}
	fail := func(what string, err error) (DatasetImportResult, error) {
		return res, fmt.Errorf("postgres: import into dataset %s: %s: %w", info.Dataset, what, err)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fail("begin", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit

	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE dataset_staging (
		line int NOT NULL,
		kind text NOT NULL,
		prompt text NOT NULL,
		prompt_sha bytea NOT NULL,
		prompt_norm bytea NOT NULL,
		turns jsonb,
		split text NOT NULL,
		target text,
		target_sha bytea,
		target_norm bytea,
		target_chars int,
		content_sha bytea NOT NULL
	) ON COMMIT DROP`); err != nil {
		return fail("staging table", err)
	}
	rows := &datasetRows{src: src}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"dataset_staging"},
		[]string{"line", "kind", "prompt", "prompt_sha", "prompt_norm", "turns", "split", "target", "target_sha", "target_norm", "target_chars", "content_sha"}, rows)
	res.Accepted = rows.accepted
	switch {
	case src.Refused():
		res.Refused = true
		return res, ErrImportRefused
	case rows.err != nil:
		return fail("read", rows.err)
	case err != nil:
		return fail("copy", err)
	}
	if _, err := tx.Exec(ctx, "CREATE INDEX ON dataset_staging (prompt_sha); ANALYZE dataset_staging"); err != nil {
		return fail("staging index", err)
	}

	// A prompt is never on both sides: find rows whose prompt is stored in
	// the other split.
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM dataset_staging s JOIN prompts p ON p.sha256 = s.prompt_sha
		WHERE p.split <> s.split`).Scan(&res.SplitConflicts); err != nil {
		return fail("splits", err)
	}
	if res.SplitConflicts > 0 {
		conflicts, err := tx.Query(ctx, `SELECT s.line, s.split, p.split FROM dataset_staging s JOIN prompts p ON p.sha256 = s.prompt_sha
			WHERE p.split <> s.split ORDER BY s.line LIMIT 5`)
		if err != nil {
			return fail("splits", err)
		}
		res.Conflicts, err = pgx.CollectRows(conflicts, func(r pgx.CollectableRow) (SplitConflict, error) {
			var c SplitConflict
			return c, r.Scan(&c.Line, &c.Split, &c.Stored)
		})
		if err != nil {
			return fail("splits", err)
		}
		if !info.SkipConflicts {
			res.Refused = true
			return res, ErrImportRefused
		}
		if _, err := tx.Exec(ctx, `DELETE FROM dataset_staging s USING prompts p
			WHERE p.sha256 = s.prompt_sha AND p.split <> s.split`); err != nil {
			return fail("splits", err)
		}
	}

	// Two statements: the insert waits for an import creating the same
	// dataset at once, and the select's snapshot, taken after, sees it.
	var datasetID int64
	if _, err := tx.Exec(ctx, `INSERT INTO datasets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, info.Dataset); err != nil {
		return fail("dataset", err)
	}
	if err := tx.QueryRow(ctx, `SELECT id FROM datasets WHERE name = $1`, info.Dataset).Scan(&datasetID); err != nil {
		return fail("dataset", err)
	}
	var sum [32]byte
	if info.FileSHA256 != nil {
		sum = info.FileSHA256()
	}
	if err := tx.QueryRow(ctx,
		`INSERT INTO imports (name, format, file_sha256, rows_read, inserted, dataset_id) VALUES ($1, $2, $3, $4, 0, $5) RETURNING id`,
		info.Name, string(info.Format), sum[:], res.Accepted, datasetID).Scan(&res.ImportID); err != nil {
		return fail("record import", err)
	}
	source := fmt.Sprintf("import:%d", res.ImportID)
	if _, err := tx.Exec(ctx, `INSERT INTO prompts (text, sha256, norm_sha256, split, turns, source)
		SELECT DISTINCT ON (prompt_sha) prompt, prompt_sha, prompt_norm, split, turns, $1 FROM dataset_staging
		ORDER BY prompt_sha, line
		ON CONFLICT (sha256) DO UPDATE SET turns = EXCLUDED.turns
		WHERE prompts.turns IS NULL AND EXCLUDED.turns IS NOT NULL`, source); err != nil {
		return fail("prompts", err)
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM prompts WHERE source = $1`, source).Scan(&res.PromptsAdded); err != nil {
		return fail("prompts", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
		SELECT DISTINCT ON (p.id, s.target_sha) p.id, s.target, s.target_sha, s.target_norm, s.target_chars, 'demonstration'
		FROM dataset_staging s JOIN prompts p ON p.sha256 = s.prompt_sha
		WHERE s.target IS NOT NULL
		ORDER BY p.id, s.target_sha
		ON CONFLICT (prompt_id, sha256) DO NOTHING`); err != nil {
		return fail("targets", err)
	}
	var distinct int64
	if err := tx.QueryRow(ctx, "SELECT count(DISTINCT content_sha) FROM dataset_staging").Scan(&distinct); err != nil {
		return fail("count", err)
	}
	// Ids follow the file's line order (the first line of repeated content).
	err = tx.QueryRow(ctx, `WITH ins AS (
			INSERT INTO dataset_rows (dataset_id, kind, prompt_id, response_id, content_sha256, import_id, import_line)
			SELECT $1, s.kind, p.id, r.id, s.content_sha, $2, s.line
			FROM (SELECT DISTINCT ON (content_sha) * FROM dataset_staging ORDER BY content_sha, line) s
			JOIN prompts p ON p.sha256 = s.prompt_sha
			LEFT JOIN responses r ON s.target IS NOT NULL AND r.prompt_id = p.id AND r.sha256 = s.target_sha
			ORDER BY s.line
			ON CONFLICT (dataset_id, content_sha256) DO NOTHING
			RETURNING prompt_id)
		SELECT count(*), count(*) FILTER (WHERE p.split = 'heldout') FROM ins JOIN prompts p ON p.id = ins.prompt_id`,
		datasetID, res.ImportID).Scan(&res.Inserted, &res.Heldout)
	if err != nil {
		return fail("rows", translate(err))
	}
	res.Train = res.Inserted - res.Heldout
	staged := res.Accepted
	if info.SkipConflicts {
		staged -= res.SplitConflicts
	}
	res.DuplicateInFile = staged - distinct
	res.AlreadyPresent = distinct - res.Inserted
	if _, err := tx.Exec(ctx, "UPDATE imports SET inserted = $1 WHERE id = $2", res.Inserted, res.ImportID); err != nil {
		return fail("record import", err)
	}
	if info.DryRun {
		res.ImportID = 0 // the deferred rollback discards everything, this record too
		return res, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit", err)
	}
	return res, nil
}

// datasetRows adapts the example reader to pgx.CopyFromSource, hashing
// the texts as rows stream by.
type datasetRows struct {
	src      DatasetSource
	cur      dataset.Example
	err      error
	accepted int64
}

func (s *datasetRows) Next() bool {
	ex, err := s.src.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = err
		}
		return false
	}
	s.cur = ex
	s.accepted++
	return true
}

func (s *datasetRows) Values() ([]any, error) {
	ex := s.cur
	psum, pnorm := sha256.Sum256([]byte(ex.Prompt)), preference.NormHash(ex.Prompt)
	var turns any // NULL for a plain prompt
	if ex.Turns != nil {
		b, err := json.Marshal(ex.Turns)
		if err != nil {
			return nil, err
		}
		turns = b
	}
	content := ex.ContentHash()
	vals := []any{ex.Line, string(ex.Kind()), ex.Prompt, psum[:], pnorm[:], turns, string(ex.Split), nil, nil, nil, nil, content[:]}
	if ex.Kind() == dataset.Demonstration {
		tsum, tnorm := sha256.Sum256([]byte(ex.Target)), preference.NormHash(ex.Target)
		vals[7], vals[8], vals[9], vals[10] = ex.Target, tsum[:], tnorm[:], int32(utf8.RuneCountInString(ex.Target))
	}
	return vals, nil
}

func (s *datasetRows) Err() error { return s.err }
