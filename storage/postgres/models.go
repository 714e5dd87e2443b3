package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/storage"
)

// Model is an imported base model's record. Its files are the verified
// checkpoint at Key, whose manifest hashes to ManifestSHA.
type Model struct {
	Name         string          `json:"name"`
	Source       string          `json:"source"` // the folder it was imported from
	Architecture string          `json:"architecture"`
	Config       json.RawMessage `json:"config"` // the engine's config.json
	DTypes       []string        `json:"dtypes"` // of the weights as imported (stored in F32)
	Params       int64           `json:"params"`
	Key          string          `json:"key"`
	ManifestSHA  string          `json:"manifest_sha256"`
	WeightsSHA   string          `json:"weights_sha256"`
	TokenizerSHA string          `json:"tokenizer_sha256"`
	Tokenizer    json.RawMessage `json:"tokenizer"` // what the tokenizer is: kind, vocabulary, special tokens
	ImportedAt   time.Time       `json:"imported_at"`
}

// RecordModel records an imported model. Recording the same model again
// (the same manifest) is a no-op and returns created=false; another model
// under a taken name is errkind.Conflict.
func (db *DB) RecordModel(ctx context.Context, m Model) (created bool, err error) {
	if err := storage.ValidateID("model", m.Name); err != nil {
		return false, fmt.Errorf("postgres: record model: %w", errkind.BadInputf("%v", err))
	}
	tag, err := db.pool.Exec(ctx,
		`INSERT INTO models (name, source, architecture, config, dtypes, params, key, manifest_sha256, weights_sha256, tokenizer_sha256, tokenizer)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (name) DO NOTHING`,
		m.Name, m.Source, m.Architecture, m.Config, m.DTypes, m.Params, m.Key, m.ManifestSHA, m.WeightsSHA, m.TokenizerSHA, m.Tokenizer)
	if err != nil {
		return false, fmt.Errorf("postgres: record model %s: %w", m.Name, translate(err))
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	old, err := db.GetModel(ctx, m.Name)
	if err != nil {
		return false, err
	}
	if old.ManifestSHA != m.ManifestSHA {
		return false, fmt.Errorf("postgres: record model %s: a different model (manifest %s, from %s) has this name; models never change, so import this one under a new name: %w",
			m.Name, old.ManifestSHA[:12], old.Source, errkind.Conflict)
	}
	return false, nil
}

const modelColumns = `name, source, architecture, config, dtypes, params, key, manifest_sha256, weights_sha256, tokenizer_sha256, tokenizer, imported_at`

func scanModel(row pgx.Row) (Model, error) {
	var m Model
	err := row.Scan(&m.Name, &m.Source, &m.Architecture, &m.Config, &m.DTypes, &m.Params, &m.Key, &m.ManifestSHA,
		&m.WeightsSHA, &m.TokenizerSHA, &m.Tokenizer, &m.ImportedAt)
	return m, err
}

// GetModel returns the model called name, errkind.NotFound when there is none.
func (db *DB) GetModel(ctx context.Context, name string) (Model, error) {
	m, err := scanModel(db.pool.QueryRow(ctx, `SELECT `+modelColumns+` FROM models WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Model{}, fmt.Errorf("postgres: model %q: none was imported under this name (see `instructflow model list`): %w", name, errkind.NotFound)
	}
	if err != nil {
		return Model{}, fmt.Errorf("postgres: model %s: %w", name, translate(err))
	}
	return m, nil
}

// ListModels returns every imported model, by name.
func (db *DB) ListModels(ctx context.Context) ([]Model, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+modelColumns+` FROM models ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list models: %w", translate(err))
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Model, error) { return scanModel(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list models: %w", translate(err))
	}
	return ms, nil
}

// RunsOfModel returns the ids of the runs whose spec starts from the model
// called name, oldest first.
func (db *DB) RunsOfModel(ctx context.Context, name string) ([]string, error) {
	return db.texts(ctx, "runs of model "+name, `SELECT id FROM runs WHERE spec->'model'->>'base' = $1 ORDER BY created_at, id`, name)
}
