package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

// BatchItem is a prompt with the responses to rank, in the order to show
// them. Item numbers count from 0 within a batch.
type BatchItem struct {
	Item      int      `json:"item"`
	Prompt    string   `json:"prompt"`
	Responses []string `json:"responses"`
}

// Batch is a labeling batch: items waiting for comparisons.
type Batch struct {
	ID       int64      `json:"id"`
	Name     string     `json:"name"`
	Run      string     `json:"run,omitempty"`
	Items    int        `json:"items"`
	Labeled  int        `json:"labeled"` // items with at least one comparison
	Deadline *time.Time `json:"deadline,omitempty"`
}

// Labeling is how people label a batch in the labeling app.
type Labeling struct {
	Overlap    float64       // share of items that a second labeler gets too, in [0, 1]
	Lease      time.Duration // how long a labeler holds an item; 0 = DefaultLease
	Guidelines string        // Markdown shown with every item
	Flags      []string      // what a labeler may flag per response; nil = DefaultFlags
}

// DefaultFlags are the metadata InstructGPT's labelers gave each response.
var DefaultFlags = []string{"fails to follow the instruction", "hallucination",
	"inappropriate for a customer assistant", "harmful advice", "sexual or violent content"}

// DefaultLease is how long a labeler holds an item unless the run says.
const DefaultLease = 30 * time.Minute

// BatchLabel is one labeler's ranking of a batch item (ranks in the shown
// order, 1 = best, equal ranks tie).
type BatchLabel struct {
	Item    int
	Labeler string
	Ranks   []int
}

// CreateBatch stores a labeling batch of a run with its items (responses
// as policy samples of source "sample:<run>") in one transaction. Creating a
// batch that exists with as many items returns it, so a retried activity is
// harmless.
func (db *DB) CreateBatch(ctx context.Context, name, run string, deadline time.Time, lab Labeling, items []BatchItem) (Batch, error) {
	return db.CreateBatchFrom(ctx, name, run, deadline, len(items), lab, func(add func([]BatchItem) error) error { return add(items) })
}

// batchInsertItems is how many items one round of CreateBatchFrom's
// inserts carries: its arrays, and pgx's encoding of them, are what the
// client holds.
const batchInsertItems = 2000

// CreateBatchFrom is CreateBatch for a batch of n items too many to hold at
// once: fill passes them to add in order, any number at a time (add keeps
// none of them), and they are stored batchInsertItems at a time, still in
// one transaction, all or nothing. A batch that exists is compared by its
// number of items alone, without calling fill.
func (db *DB) CreateBatchFrom(ctx context.Context, name, run string, deadline time.Time, n int, lab Labeling, fill func(add func([]BatchItem) error) error) (Batch, error) {
	b := Batch{Name: name, Run: run, Items: n, Deadline: &deadline}
	if !(lab.Overlap >= 0 && lab.Overlap <= 1) || lab.Lease < 0 {
		return Batch{}, errkind.BadInputf("batch %s: overlap %v must be in [0, 1] and lease %v positive", name, lab.Overlap, lab.Lease)
	}
	if lab.Lease == 0 {
		lab.Lease = DefaultLease
	}
	if lab.Flags == nil {
		lab.Flags = DefaultFlags
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var existing int
		err := tx.QueryRow(ctx, "SELECT id, items FROM labeling_batches WHERE name = $1", name).Scan(&b.ID, &existing)
		if err == nil {
			if existing != n {
				return fmt.Errorf("batch exists with %d items, not %d: %w", existing, n, errkind.Conflict)
			}
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := tx.QueryRow(ctx,
			`INSERT INTO labeling_batches (name, run_id, deadline, items, overlap, lease, guidelines, flag_names)
			 VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6::interval, $7, $8) RETURNING id`,
			name, run, deadline, n, lab.Overlap, lab.Lease, lab.Guidelines, lab.Flags).Scan(&b.ID); err != nil {
			return err
		}
		stored := 0
		err = fill(func(items []BatchItem) error {
			for start := 0; start < len(items); start += batchInsertItems {
				part := items[start:min(len(items), start+batchInsertItems)]
				if err := insertBatchItems(ctx, tx, b.ID, run, stored, part); err != nil {
					return err
				}
				stored += len(part)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if stored != n {
			return fmt.Errorf("%d items given, %d announced", stored, n)
		}
		return nil
	})
	if err != nil {
		return Batch{}, fmt.Errorf("postgres: create batch %s: %w", name, translate(err))
	}
	return b, nil
}

// StoredText is a text as a batch stores it: Postgres text cannot hold
// NUL, which a byte-level model may sample, so NUL becomes U+FFFD (as the
// tokenizers render bytes that are not UTF-8).
func StoredText(s string) string { return strings.ReplaceAll(s, "\x00", "\uFFFD") }

// insertBatchItems stores items numbered first, first+1, ... of batch id:
// their prompts and responses (when new) and the items.
func insertBatchItems(ctx context.Context, tx pgx.Tx, id int64, run string, first int, items []BatchItem) error {
	var itemNo, pos []int32
	var promptTexts, respTexts []string
	var promptSums, promptNorms, respSums, respNorms [][]byte
	var chars []int32
	for i, it := range items {
		if it.Item != first+i {
			return fmt.Errorf("item %d is numbered %d: number items 0, 1, ... in order", first+i, it.Item)
		}
		prompt := StoredText(it.Prompt)
		ps, pn := sha256.Sum256([]byte(prompt)), preference.NormHash(prompt)
		for j, r := range it.Responses {
			r = StoredText(r)
			rs, rn := sha256.Sum256([]byte(r)), preference.NormHash(r)
			itemNo, pos = append(itemNo, int32(it.Item)), append(pos, int32(j))
			promptTexts, promptSums, promptNorms = append(promptTexts, prompt), append(promptSums, ps[:]), append(promptNorms, pn[:])
			respTexts, respSums, respNorms = append(respTexts, r), append(respSums, rs[:]), append(respNorms, rn[:])
			chars = append(chars, int32(utf8.RuneCountInString(r)))
		}
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO prompts (text, sha256, norm_sha256) SELECT DISTINCT ON (s) t, s, n
		 FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u (t, s, n) ORDER BY s
		 ON CONFLICT (sha256) DO NOTHING`, promptTexts, promptSums, promptNorms); err != nil {
		return fmt.Errorf("prompts: %w", err)
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
		 SELECT DISTINCT ON (p.id, u.s) p.id, u.t, u.s, u.n, u.c, $6
		 FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[], $5::integer[]) AS u (ps, t, s, n, c)
		 JOIN prompts p ON p.sha256 = u.ps
		 ORDER BY p.id, u.s
		 ON CONFLICT (prompt_id, sha256) DO NOTHING`, promptSums, respTexts, respSums, respNorms, chars, "sample:"+run); err != nil {
		return fmt.Errorf("responses: %w", err)
	}
	tag, err := tx.Exec(ctx,
		`INSERT INTO labeling_batch_items (batch_id, item, prompt_id, response_ids)
		 SELECT $1, u.item, p.id, array_agg(r.id ORDER BY u.pos)
		 FROM unnest($2::integer[], $3::integer[], $4::bytea[], $5::bytea[]) AS u (item, pos, ps, rs)
		 JOIN prompts p ON p.sha256 = u.ps
		 JOIN responses r ON r.prompt_id = p.id AND r.sha256 = u.rs
		 GROUP BY u.item, p.id`, id, itemNo, pos, promptSums, respSums)
	if err != nil {
		return fmt.Errorf("items %d-%d: %w", first, first+len(items)-1, err)
	}
	if int(tag.RowsAffected()) != len(items) {
		return fmt.Errorf("items %d-%d: stored %d of %d", first, first+len(items)-1, tag.RowsAffected(), len(items))
	}
	return nil
}

// batchColumns are a Batch's columns of labeling_batches b, for scanBatch.
const batchColumns = `b.id, b.name, coalesce(b.run_id, ''), b.items, b.deadline,
	(SELECT count(DISTINCT c.batch_item) FROM comparisons c WHERE c.batch_id = b.id)`

func scanBatch(row pgx.Row) (Batch, error) {
	var b Batch
	return b, row.Scan(&b.ID, &b.Name, &b.Run, &b.Items, &b.Deadline, &b.Labeled)
}

// GetBatch reads a batch with how many of its items have comparisons.
func (db *DB) GetBatch(ctx context.Context, name string) (Batch, error) {
	b, err := scanBatch(db.pool.QueryRow(ctx, "SELECT "+batchColumns+" FROM labeling_batches b WHERE b.name = $1", name))
	if err != nil {
		return Batch{}, fmt.Errorf("postgres: batch %s: %w", name, translate(err))
	}
	return b, nil
}

// OpenBatches lists the batches that still have items without a comparison,
// oldest first; with run set, only that run's.
func (db *DB) OpenBatches(ctx context.Context, run string) ([]string, error) {
	return db.texts(ctx, "open batches",
		`SELECT b.name FROM labeling_batches b
		 WHERE ($1 = '' OR b.run_id = $1)
		   AND b.items > (SELECT count(DISTINCT c.batch_item) FROM comparisons c WHERE c.batch_id = b.id)
		 ORDER BY b.id`, run)
}

// UnlabeledItems returns a batch's items that have no comparison yet, in
// item order.
func (db *DB) UnlabeledItems(ctx context.Context, name string) ([]BatchItem, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT i.item, p.text,
		        (SELECT array_agg(r.text ORDER BY u.ord)
		           FROM unnest(i.response_ids) WITH ORDINALITY AS u (rid, ord) JOIN responses r ON r.id = u.rid)
		 FROM labeling_batches b
		 JOIN labeling_batch_items i ON i.batch_id = b.id
		 JOIN prompts p ON p.id = i.prompt_id
		 WHERE b.name = $1
		   AND NOT EXISTS (SELECT 1 FROM comparisons c WHERE c.batch_id = b.id AND c.batch_item = i.item)
		 ORDER BY i.item`, name)
	if err != nil {
		return nil, fmt.Errorf("postgres: items of batch %s: %w", name, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BatchItem, error) {
		var it BatchItem
		return it, row.Scan(&it.Item, &it.Prompt, &it.Responses)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: items of batch %s: %w", name, err)
	}
	return items, nil
}

// AddLabels stores rankings of a batch's items in one statement. A label
// already stored (same batch, item, labeler and ranks) is not stored twice;
// an item the batch does not have refuses the whole call. kind is the
// labelers' kind ("human" or "simulated").
func (db *DB) AddLabels(ctx context.Context, batch, kind string, labels []BatchLabel) (int64, error) {
	items := make([]int32, len(labels))
	names := make([]string, len(labels))
	ranks := make([]string, len(labels))
	hashes := make([][]byte, len(labels))
	for i, l := range labels {
		items[i], names[i] = int32(l.Item), l.Labeler
		parts := make([]string, len(l.Ranks))
		for j, r := range l.Ranks {
			parts[j] = strconv.Itoa(r)
		}
		ranks[i] = "{" + strings.Join(parts, ",") + "}"
		h := batchLabelHash(batch, l)
		hashes[i] = h[:]
	}
	var inserted int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var missing []int32
		if err := tx.QueryRow(ctx,
			`SELECT coalesce(array_agg(u.item ORDER BY u.item), '{}') FROM unnest($2::integer[]) AS u (item)
			 WHERE NOT EXISTS (SELECT 1 FROM labeling_batch_items i JOIN labeling_batches b ON b.id = i.batch_id
			                   WHERE b.name = $1 AND i.item = u.item)`, batch, items).Scan(&missing); err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("batch has no item %d: %w", missing[0], errkind.NotFound)
		}
		if _, err := tx.Exec(ctx,
			"INSERT INTO labelers (name, kind) SELECT DISTINCT n, $2 FROM unnest($1::text[]) AS n ON CONFLICT (name) DO NOTHING",
			names, kind); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, source, batch_id, batch_item)
			 SELECT i.prompt_id, l.id, i.response_ids, u.rk::smallint[], u.h, 'batch:' || b.name, b.id, i.item
			 FROM unnest($2::integer[], $3::text[], $4::text[], $5::bytea[]) WITH ORDINALITY AS u (item, lab, rk, h, ord)
			 JOIN labeling_batches b ON b.name = $1
			 JOIN labeling_batch_items i ON i.batch_id = b.id AND i.item = u.item
			 JOIN labelers l ON l.name = u.lab
			 ORDER BY u.ord
			 ON CONFLICT (content_sha256) DO NOTHING`, batch, items, names, ranks, hashes)
		inserted = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: add labels to batch %s: %w", batch, translate(err))
	}
	return inserted, nil
}

// batchLabelHash is a batch label's content hash: batch, item, labeler and
// ranks (the item fixes the prompt and the responses).
func batchLabelHash(batch string, l BatchLabel) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, s := range []string{"batch", batch, strconv.Itoa(l.Item), l.Labeler} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, r := range l.Ranks {
		binary.BigEndian.PutUint64(n[:], uint64(r))
		h.Write(n[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ItemRanks is one comparison in force of a batch item: its ranks in the
// shown order.
type ItemRanks struct {
	Item      int
	Ranks     []int16
	Responses [][]byte // SHA-256 of each response, in the comparison's order (Ranks')
}

// BatchRanks returns the comparisons in force (not superseded) of a
// batch's items, by item and then comparison id.
func (db *DB) BatchRanks(ctx context.Context, name string) ([]ItemRanks, error) {
	// The responses in the comparison's own order, which its ranks follow:
	// a labeling tool may show a pair in another order than the item's.
	rows, err := db.pool.Query(ctx, `SELECT c.batch_item, c.ranks,
		        (SELECT array_agg(r.sha256 ORDER BY u.ord)
		           FROM unnest(c.response_ids) WITH ORDINALITY AS u (rid, ord) JOIN responses r ON r.id = u.rid)
		 FROM current_comparisons c
		 JOIN labeling_batches b ON b.id = c.batch_id
		 WHERE b.name = $1 ORDER BY c.batch_item, c.id`, name)
	if err != nil {
		return nil, fmt.Errorf("postgres: ranks of batch %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ItemRanks, error) {
		var it ItemRanks
		return it, r.Scan(&it.Item, &it.Ranks, &it.Responses)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: ranks of batch %s: %w", name, err)
	}
	return out, nil
}
