package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/chat"

	"github.com/instructflow/instructflow/dataset"
)

// DatasetInfo counts a dataset's rows.
type DatasetInfo struct {
	Name           string    `json:"name"`
	Rows           int64     `json:"rows"`
	Demonstrations int64     `json:"demonstrations"`
	Prompts        int64     `json:"prompts"` // rows of kind prompt
	Train          int64     `json:"train"`   // rows by split
	Heldout        int64     `json:"heldout"`
	Imports        int64     `json:"imports"`
	CreatedAt      time.Time `json:"created_at"`
}

const datasetInfoSQL = `SELECT d.name,
	count(r.id), count(r.id) FILTER (WHERE r.kind = 'demonstration'), count(r.id) FILTER (WHERE r.kind = 'prompt'),
	count(r.id) FILTER (WHERE p.split = 'train'), count(r.id) FILTER (WHERE p.split = 'heldout'),
	(SELECT count(*) FROM imports i WHERE i.dataset_id = d.id), d.created_at
	FROM datasets d
	LEFT JOIN dataset_rows r ON r.dataset_id = d.id
	LEFT JOIN prompts p ON p.id = r.prompt_id`

func scanDatasetInfo(row pgx.CollectableRow) (DatasetInfo, error) {
	var d DatasetInfo
	return d, row.Scan(&d.Name, &d.Rows, &d.Demonstrations, &d.Prompts, &d.Train, &d.Heldout, &d.Imports, &d.CreatedAt)
}

// Datasets lists the datasets by name.
func (db *DB) Datasets(ctx context.Context) ([]DatasetInfo, error) {
	rows, err := db.pool.Query(ctx, datasetInfoSQL+` GROUP BY d.id ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: datasets: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDatasetInfo)
	if err != nil {
		return nil, fmt.Errorf("postgres: datasets: %w", err)
	}
	return out, nil
}

// Dataset counts one dataset's rows; errkind.NotFound if there is none of
// that name.
func (db *DB) Dataset(ctx context.Context, name string) (DatasetInfo, error) {
	rows, err := db.pool.Query(ctx, datasetInfoSQL+` WHERE d.name = $1 GROUP BY d.id`, name)
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("postgres: dataset %s: %w", name, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDatasetInfo)
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("postgres: dataset %s: %w", name, translate(err))
	}
	return d, nil
}

// DatasetRows calls fn with each row of the named dataset (of one kind, or
// all when kind is "") in the order the rows were added, streaming them;
// errkind.NotFound if there is no such dataset.
func (db *DB) DatasetRows(ctx context.Context, name string, kind dataset.Kind, fn func(dataset.Example) error) error {
	var id int64
	if err := db.pool.QueryRow(ctx, "SELECT id FROM datasets WHERE name = $1", name).Scan(&id); err != nil {
		return fmt.Errorf("postgres: dataset %s: %w", name, translate(err))
	}
	rows, err := db.pool.Query(ctx, `SELECT p.text, p.turns, coalesce(t.text, ''), p.split
		FROM dataset_rows r JOIN prompts p ON p.id = r.prompt_id LEFT JOIN responses t ON t.id = r.response_id
		WHERE r.dataset_id = $1 AND ($2 = '' OR r.kind = $2) ORDER BY r.id`, id, string(kind))
	if err != nil {
		return fmt.Errorf("postgres: dataset %s: %w", name, err)
	}
	defer rows.Close()
	var r dataset.Example
	var turns []byte
	_, err = pgx.ForEachRow(rows, []any{&r.Prompt, &turns, &r.Target, &r.Split}, func() error {
		var err error
		if r.Turns, err = parseTurns(turns); err != nil {
			return fmt.Errorf("prompt %.40q: %w", r.Prompt, err)
		}
		return fn(r)
	})
	if err != nil {
		return fmt.Errorf("postgres: dataset %s: %w", name, err)
	}
	return nil
}

// parseTurns reads a prompt's turns column (NULL: none).
func parseTurns(b []byte) ([]chat.Message, error) {
	if b == nil {
		return nil, nil
	}
	var turns []chat.Message
	if err := json.Unmarshal(b, &turns); err != nil {
		return nil, fmt.Errorf("turns: %w", err)
	}
	return turns, nil
}

// StoredPrompt is a prompt as stored: its text and, for a conversation,
// its turns.
type StoredPrompt struct {
	Text  string
	Turns []chat.Message
}

// DatasetPrompts returns the distinct prompts of a dataset's rows (of
// every kind) in one split, in the order of their first row.
func (db *DB) DatasetPrompts(ctx context.Context, name string, split dataset.Split) ([]StoredPrompt, error) {
	rows, err := db.pool.Query(ctx, `SELECT p.text, p.turns FROM prompts p
		JOIN (SELECT r.prompt_id, min(r.id) AS first FROM dataset_rows r JOIN datasets d ON d.id = r.dataset_id
		      WHERE d.name = $1 GROUP BY r.prompt_id) f ON f.prompt_id = p.id
		WHERE p.split = $2 ORDER BY f.first`, name, string(split))
	if err != nil {
		return nil, fmt.Errorf("postgres: prompts of dataset %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredPrompt, error) {
		var p StoredPrompt
		var turns []byte
		if err := row.Scan(&p.Text, &turns); err != nil {
			return p, err
		}
		var err error
		p.Turns, err = parseTurns(turns)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: prompts of dataset %s: %w", name, err)
	}
	return out, nil
}

// DatasetDemonstrations returns a dataset's demonstrations of one split in
// the order they were added.
func (db *DB) DatasetDemonstrations(ctx context.Context, name string, split dataset.Split) ([]dataset.Example, error) {
	var out []dataset.Example
	err := db.DatasetRows(ctx, name, dataset.Demonstration, func(ex dataset.Example) error {
		if ex.Split == split {
			out = append(out, ex)
		}
		return nil
	})
	return out, err
}
