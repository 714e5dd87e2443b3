package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/preference"
)

// SourcePrompt is a prompt of a data source (a task) with its split and,
// when it has one, a labeler's demonstration.
type SourcePrompt struct {
	Text, Split   string
	Demonstration string // "" = none
}

// Pair is a prompt with a response.
type Pair struct{ Prompt, Response string }

// LoadSource stores a data source's prompts and demonstrations (written by
// labeler) in one transaction, and the same rows as the dataset named
// source (a demonstration row for each demonstration, a prompt row for each
// prompt without one), so that a run may name it as data.source or as
// data.sft. Rows that exist are kept as they are, so loading the same
// source again adds nothing. It returns the prompts added.
func (db *DB) LoadSource(ctx context.Context, source, labeler string, ps []SourcePrompt) (int64, error) {
	var added int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		texts, splits := make([]string, len(ps)), make([]string, len(ps))
		sums, norms := make([][]byte, len(ps)), make([][]byte, len(ps))
		for i, p := range ps {
			s, n := sha256.Sum256([]byte(p.Text)), preference.NormHash(p.Text)
			texts[i], splits[i], sums[i], norms[i] = p.Text, p.Split, s[:], n[:]
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO prompts (text, sha256, norm_sha256, split, source)
			 SELECT t, s, n, sp, $5 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[]) WITH ORDINALITY AS u (t, s, n, sp, ord)
			 ORDER BY ord
			 ON CONFLICT (sha256) DO NOTHING`, texts, sums, norms, splits, source)
		if err != nil {
			return fmt.Errorf("prompts: %w", err)
		}
		added = tag.RowsAffected()
		var demoPrompts [][]byte
		var demoTexts []string
		var demoSums, demoNorms [][]byte
		var demoChars []int32
		for i, p := range ps {
			if p.Demonstration == "" {
				continue
			}
			s, n := sha256.Sum256([]byte(p.Demonstration)), preference.NormHash(p.Demonstration)
			demoPrompts, demoTexts = append(demoPrompts, sums[i]), append(demoTexts, p.Demonstration)
			demoSums, demoNorms = append(demoSums, s[:]), append(demoNorms, n[:])
			demoChars = append(demoChars, int32(utf8.RuneCountInString(p.Demonstration)))
		}
		if len(demoTexts) == 0 {
			return loadSourceDataset(ctx, tx, source, ps, sums)
		}
		if _, err := tx.Exec(ctx,
			"INSERT INTO labelers (name, kind) VALUES ($1, 'simulated') ON CONFLICT (name) DO NOTHING", labeler); err != nil {
			return fmt.Errorf("labeler: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
			 SELECT p.id, u.t, u.s, u.n, u.c, 'demonstration'
			 FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[], $5::integer[]) AS u (ps, t, s, n, c)
			 JOIN prompts p ON p.sha256 = u.ps
			 ON CONFLICT (prompt_id, sha256) DO NOTHING`, demoPrompts, demoTexts, demoSums, demoNorms, demoChars); err != nil {
			return fmt.Errorf("demonstrations: %w", err)
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO demonstrations (prompt_id, response_id, labeler_id)
			 SELECT p.id, r.id, l.id
			 FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS u (ps, s, ord)
			 JOIN prompts p ON p.sha256 = u.ps
			 JOIN responses r ON r.prompt_id = p.id AND r.sha256 = u.s
			 JOIN labelers l ON l.name = $3
			 ORDER BY u.ord
			 ON CONFLICT (prompt_id, response_id, labeler_id) DO NOTHING`, demoPrompts, demoSums, labeler)
		if err != nil {
			return fmt.Errorf("demonstrations: %w", err)
		}
		return loadSourceDataset(ctx, tx, source, ps, sums)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: load source %q: %w", source, translate(err))
	}
	return added, nil
}

// Prompts returns a source's prompts of one split in the order they were
// stored.
func (db *DB) Prompts(ctx context.Context, source, split string) ([]string, error) {
	return db.texts(ctx, fmt.Sprintf("prompts of %q", source),
		"SELECT text FROM prompts WHERE source = $1 AND split = $2 ORDER BY id", source, split)
}

// Demonstrations returns the demonstrations of a source's prompts of one
// split in the order they were stored.
func (db *DB) Demonstrations(ctx context.Context, source, split string) ([]Pair, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT p.text, r.text FROM demonstrations d
		 JOIN prompts p ON p.id = d.prompt_id
		 JOIN responses r ON r.id = d.response_id
		 WHERE p.source = $1 AND p.split = $2 ORDER BY d.id`, source, split)
	if err != nil {
		return nil, fmt.Errorf("postgres: demonstrations of %q: %w", source, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Pair, error) {
		var p Pair
		return p, row.Scan(&p.Prompt, &p.Response)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: demonstrations of %q: %w", source, err)
	}
	return out, nil
}

// loadSourceDataset adds a source's rows to the dataset of its name, in the
// order given.
func loadSourceDataset(ctx context.Context, tx pgx.Tx, source string, ps []SourcePrompt, promptSums [][]byte) error {
	if err := CheckDatasetName(source); err != nil {
		return err
	}
	kinds, demoSums, contents := make([]string, len(ps)), make([][]byte, len(ps)), make([][]byte, len(ps))
	for i, p := range ps {
		ex := dataset.Example{Prompt: p.Text, Target: p.Demonstration}
		c := ex.ContentHash()
		kinds[i], contents[i] = string(ex.Kind()), c[:]
		if p.Demonstration != "" {
			d := sha256.Sum256([]byte(p.Demonstration))
			demoSums[i] = d[:]
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO datasets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", source); err != nil {
		return fmt.Errorf("dataset %s: %w", source, err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO dataset_rows (dataset_id, kind, prompt_id, response_id, content_sha256)
		SELECT d.id, u.k, p.id, r.id, u.c
		FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS u (k, ps, rs, c, ord)
		JOIN datasets d ON d.name = $1
		JOIN prompts p ON p.sha256 = u.ps
		LEFT JOIN responses r ON u.rs IS NOT NULL AND r.prompt_id = p.id AND r.sha256 = u.rs
		ORDER BY u.ord
		ON CONFLICT (dataset_id, content_sha256) DO NOTHING`, source, kinds, promptSums, demoSums, contents)
	if err != nil {
		return fmt.Errorf("dataset %s: %w", source, err)
	}
	return nil
}
