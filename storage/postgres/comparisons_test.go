package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

// comparison is a stored ranking, as the tests read it back.
type comparison struct {
	ID          int64
	PromptID    int64
	LabelerID   int64
	ResponseIDs []int64 // in shown order
	Ranks       []int16
	Supersedes  *int64
	Hash        [32]byte
}

// insertRanking stores r (its labeler, prompt and responses as needed) as one
// comparison, in one transaction, as the runtime role: the tests' way to
// put a few labels in place, and to write a correction (supersedes, when
// not zero, names the comparison this one corrects), which the import
// cannot. If the same content was stored before, it returns that
// comparison's id and created=false.
func insertRanking(ctx context.Context, db *DB, r preference.Ranking, source string, supersedes int64) (id int64, created bool, err error) {
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

// readComparison reads one comparison.
func readComparison(ctx context.Context, db *DB, id int64) (comparison, error) {
	var c comparison
	var hash []byte
	err := db.pool.QueryRow(ctx,
		`SELECT id, prompt_id, labeler_id, response_ids, ranks, supersedes, content_sha256
		 FROM comparisons WHERE id = $1`, id).
		Scan(&c.ID, &c.PromptID, &c.LabelerID, &c.ResponseIDs, &c.Ranks, &c.Supersedes, &hash)
	if err != nil {
		return comparison{}, fmt.Errorf("postgres: comparison %d: %w", id, translate(err))
	}
	copy(c.Hash[:], hash)
	return c, nil
}

func ranking(labeler string, ranks ...int) preference.Ranking {
	return preference.Ranking{
		Prompt:    "reverse: abc",
		Responses: []string{"cba", "abc", "bca"}[:len(ranks)],
		Ranks:     ranks,
		Labeler:   labeler,
	}
}

func TestComparisonsAreImmutable(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	id, _, err := insertRanking(ctx, db, ranking("bob", 2, 1), "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"update", "UPDATE comparisons SET ranks = '{1,2}' WHERE id = $1"},
		{"delete", "DELETE FROM comparisons WHERE id = $1"},
		{"truncate", "TRUNCATE comparisons CASCADE"},
		{"update audit log", "UPDATE audit_log SET action = 'x' WHERE $1::bigint > 0"},
		{"delete audit log", "DELETE FROM audit_log WHERE $1::bigint > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []any{id}
			if !strings.Contains(tc.sql, "$1") {
				args = nil
			}
			_, err := ownerConn(t, db).Exec(ctx, tc.sql, args...)
			if err == nil || !errors.Is(translate(err), errkind.Immutable) {
				t.Fatalf("%s as the owner: got %v, want the trigger to refuse", tc.sql, err)
			}
		})
	}
	c, err := readComparison(ctx, db, id)
	if err != nil || fmt.Sprint(c.Ranks) != "[2 1]" {
		t.Fatalf("comparison changed: %v %v", c, err)
	}

	// A correction supersedes: both rows stay, only the new one is current.
	fix, created, err := insertRanking(ctx, db, ranking("bob", 1, 2), "correction", id)
	if err != nil || !created {
		t.Fatalf("supersede: %v", err)
	}
	var current []int64
	rows, _ := db.pool.Query(ctx, "SELECT id FROM current_comparisons ORDER BY id")
	current, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(current) != fmt.Sprint([]int64{fix}) {
		t.Errorf("current comparisons %v, want only the correction %d", current, fix)
	}
	if _, _, err := insertRanking(ctx, db, ranking("carol", 1, 2), "correction", id); err == nil {
		t.Error("a comparison was superseded twice")
	}
	var audited int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE entity = 'comparisons'").Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != 2 {
		t.Errorf("%d audit entries for comparison inserts, want 2", audited)
	}
}
