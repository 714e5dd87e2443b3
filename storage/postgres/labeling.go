package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
)

// The labeling app's records (migration 009): labelers' sign-in links and
// sessions, assignments of batch items, and submissions. Tokens are stored
// as their SHA-256 only; submissions go through database functions that
// take the labeler from the session token and every id from the
// assignment.

// NewToken is a fresh random token (32 bytes, URL-safe base64).
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenHash is how a token is stored: its SHA-256.
func TokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// LabelerAccount is a human labeler as the labeling app knows it.
type LabelerAccount struct {
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	Labels    int64      `json:"labels"` // comparisons given
	Open      int64      `json:"open"`   // assignments held now
	LastLabel *time.Time `json:"last_label,omitempty"`
}

// AddLabeler creates the human labeler name (or finds it: a revoked one is
// reinstated) and returns a one-time sign-in token valid for ttl. A name
// taken by simulated or imported labels is refused.
func (db *DB) AddLabeler(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if name == "" || len(name) > 200 {
		return "", errkind.BadInputf("labeler name %q: use 1 to 200 characters", name)
	}
	token := NewToken()
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO labelers (name, kind) VALUES ($1, 'human') ON CONFLICT (name) DO NOTHING", name); err != nil {
			return err
		}
		var id int64
		var kind string
		if err := tx.QueryRow(ctx, "SELECT id, kind FROM labelers WHERE name = $1", name).Scan(&id, &kind); err != nil {
			return err
		}
		if kind != "human" {
			return errkind.BadInputf("%q names %s labels, not a person: choose another name", name, kind)
		}
		if _, err := tx.Exec(ctx, "UPDATE labelers SET revoked_at = NULL WHERE id = $1 AND revoked_at IS NOT NULL", id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO labeler_links (token_sha256, labeler_id, expires_at) VALUES ($1, $2, now() + $3::interval)",
			TokenHash(token), id, ttl)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("postgres: add labeler %s: %w", name, translate(err))
	}
	return token, nil
}

// RevokeLabeler signs a labeler out everywhere: its links and sessions stop
// working and its open assignments go back to the pool when they lapse.
// Its labels stay.
func (db *DB) RevokeLabeler(ctx context.Context, name string) error {
	// Its sessions and unused links end for good: adding it again later
	// gives a new link, not the old ones back.
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, "UPDATE labelers SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1 AND kind = 'human' RETURNING id", name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no such human labeler (instructflow labelers list lists them): %w", errkind.NotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE web_sessions SET ended_at = now() WHERE labeler_id = $1 AND ended_at IS NULL", id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE labeler_links SET used_at = now() WHERE labeler_id = $1 AND used_at IS NULL", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: revoke labeler %s: %w", name, err)
	}
	return nil
}

// LabelerAccounts lists the human labelers with their work.
func (db *DB) LabelerAccounts(ctx context.Context) ([]LabelerAccount, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT l.name, l.kind, l.revoked_at,
		       (SELECT count(*) FROM comparisons c WHERE c.labeler_id = l.id),
		       (SELECT count(*) FROM assignments a WHERE a.labeler_id = l.id AND a.done_at IS NULL AND a.expires_at > now()),
		       (SELECT max(c.created_at) FROM comparisons c WHERE c.labeler_id = l.id)
		FROM labelers l WHERE l.kind = 'human' ORDER BY l.name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: labelers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LabelerAccount, error) {
		var a LabelerAccount
		return a, r.Scan(&a.Name, &a.Kind, &a.Revoked, &a.Labels, &a.Open, &a.LastLabel)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: labelers: %w", err)
	}
	return out, nil
}

// Session is who a session token signs in.
type Session struct {
	Admin   bool
	Labeler string // "" for the admin
	// AdminKey is the SHA-256 of the admin token that opened an admin
	// session: the server refuses it when its token has changed since.
	AdminKey []byte
}

// SignIn spends a one-time sign-in token and opens a session of ttl for
// its labeler, returning the session's token. An unknown, used, expired or
// revoked link is errkind.Unauthenticated.
func (db *DB) SignIn(ctx context.Context, linkToken string, ttl time.Duration) (string, Session, error) {
	session := NewToken()
	var s Session
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `
			UPDATE labeler_links k SET used_at = now()
			FROM labelers l
			WHERE k.token_sha256 = $1 AND k.used_at IS NULL AND k.expires_at > now()
			  AND l.id = k.labeler_id AND l.revoked_at IS NULL
			RETURNING l.id, l.name`, TokenHash(linkToken)).Scan(&id, &s.Labeler)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("this sign-in link is unknown, used, expired or revoked; ask for a new one (instructflow labelers add NAME): %w", errkind.Unauthenticated)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO web_sessions (token_sha256, labeler_id, expires_at) VALUES ($1, $2, now() + $3::interval)",
			TokenHash(session), id, ttl)
		return err
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("postgres: sign in: %w", err)
	}
	return session, s, nil
}

// AdminSession opens an admin session of ttl for adminToken (which the
// caller checked) and returns its token.
func (db *DB) AdminSession(ctx context.Context, adminToken string, ttl time.Duration) (string, error) {
	session := NewToken()
	if _, err := db.pool.Exec(ctx, "INSERT INTO web_sessions (token_sha256, admin, admin_key, expires_at) VALUES ($1, true, $2, now() + $3::interval)",
		TokenHash(session), TokenHash(adminToken), ttl); err != nil {
		return "", fmt.Errorf("postgres: admin session: %w", err)
	}
	return session, nil
}

// GetSession says who token signs in: errkind.Unauthenticated when it is
// unknown, ended, expired or its labeler revoked.
func (db *DB) GetSession(ctx context.Context, token string) (Session, error) {
	var s Session
	var labeler *string
	err := db.pool.QueryRow(ctx, `
		SELECT s.admin, s.admin_key, l.name FROM web_sessions s LEFT JOIN labelers l ON l.id = s.labeler_id
		WHERE s.token_sha256 = $1 AND s.ended_at IS NULL AND s.expires_at > now()
		  AND (s.admin OR l.revoked_at IS NULL)`, TokenHash(token)).Scan(&s.Admin, &s.AdminKey, &labeler)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, fmt.Errorf("postgres: session: %w", errkind.Unauthenticated)
	}
	if err != nil {
		return Session{}, fmt.Errorf("postgres: session: %w", err)
	}
	if labeler != nil {
		s.Labeler = *labeler
	}
	return s, nil
}

// EndSession signs a session out.
func (db *DB) EndSession(ctx context.Context, token string) error {
	if _, err := db.pool.Exec(ctx, "UPDATE web_sessions SET ended_at = now() WHERE token_sha256 = $1 AND ended_at IS NULL", TokenHash(token)); err != nil {
		return fmt.Errorf("postgres: end session: %w", err)
	}
	return nil
}

// ClaimItem gives the session's labeler an item of batch to label (see
// claim_item in migration 009): the assignment's id, or 0 when nothing is
// left for this labeler.
func (db *DB) ClaimItem(ctx context.Context, session, batch string) (int64, error) {
	var id *int64
	if err := db.pool.QueryRow(ctx, "SELECT public.claim_item($1, $2)", session, batch).Scan(&id); err != nil {
		return 0, fmt.Errorf("postgres: claim an item of %s: %w", batch, translate(err))
	}
	if id == nil {
		return 0, nil
	}
	return *id, nil
}

// Assignment is a batch item as one labeler sees it: the responses in the
// order drawn for that labeler.
type Assignment struct {
	ID         int64
	Batch      string
	Item       int
	Prompt     string
	Responses  []string // shown order
	FlagNames  []string
	Guidelines string
	Expires    time.Time
	Done       bool
	Skipped    string
}

// GetAssignment reads assignment id through the view my_assignments, which
// shows a session only its own labeler's: another's is errkind.Forbidden.
func (db *DB) GetAssignment(ctx context.Context, session string, id int64) (Assignment, error) {
	var a Assignment
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('instructflow.session', $1, true)", session); err != nil {
			return err
		}
		var done *time.Time
		var skip *string
		err := tx.QueryRow(ctx, `
			SELECT m.id, m.batch, m.item, m.prompt, m.responses, m.flag_names, b.guidelines, m.expires_at, m.done_at, m.skip_reason
			FROM my_assignments m JOIN labeling_batches b ON b.name = m.batch WHERE m.id = $1`, id).Scan(
			&a.ID, &a.Batch, &a.Item, &a.Prompt, &a.Responses, &a.FlagNames, &a.Guidelines, &a.Expires, &done, &skip)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("assignment %d is not yours: %w", id, errkind.Forbidden)
		}
		a.Done = done != nil
		if skip != nil {
			a.Skipped = *skip
		}
		return err
	})
	if err != nil {
		return Assignment{}, fmt.Errorf("postgres: assignment %d: %w", id, err)
	}
	return a, nil
}

// Label is a labeler's judgement of an assignment, in the shown order:
// ranks (1 = best, equal ranks tie), ratings 1-7 (0 = not rated) and the
// flags ticked per response.
type Label struct {
	Ranks   []int
	Ratings []int
	Flags   [][]string
}

// SubmitLabel stores the session labeler's label of assignment id through
// submit_label (migration 009) and returns the comparison's id.
func (db *DB) SubmitLabel(ctx context.Context, session string, id int64, l Label) (int64, error) {
	for i, r := range l.Ranks {
		if r < 1 || r > len(l.Ranks) || (i < len(l.Ratings) && (l.Ratings[i] < 0 || l.Ratings[i] > 7)) {
			return 0, errkind.BadInputf("give each of the %d responses a rank from 1 to %d and a rating from 1 to 7 (or none)", len(l.Ranks), len(l.Ranks))
		}
	}
	ranks := make([]int16, len(l.Ranks))
	for i, r := range l.Ranks {
		ranks[i] = int16(r)
	}
	var ratings []*int16
	for _, r := range l.Ratings {
		if r == 0 {
			ratings = append(ratings, nil)
			continue
		}
		v := int16(r)
		ratings = append(ratings, &v)
	}
	flags := l.Flags
	if flags == nil {
		flags = make([][]string, len(l.Ranks))
	}
	for i := range flags {
		if flags[i] == nil {
			flags[i] = []string{}
		}
	}
	fj, err := json.Marshal(flags)
	if err != nil {
		return 0, fmt.Errorf("postgres: submit label %d: %w", id, err)
	}
	var cid int64
	if err := db.pool.QueryRow(ctx, "SELECT public.submit_label($1, $2, $3, $4, $5)", session, id, ranks, ratings, fj).Scan(&cid); err != nil {
		return 0, fmt.Errorf("postgres: submit label %d: %w", id, translate(err))
	}
	return cid, nil
}

// SkipItem records that the session labeler skips assignment id, and why.
func (db *DB) SkipItem(ctx context.Context, session string, id int64, reason string) error {
	if _, err := db.pool.Exec(ctx, "SELECT public.skip_item($1, $2, $3)", session, id, reason); err != nil {
		return fmt.Errorf("postgres: skip %d: %w", id, translate(err))
	}
	return nil
}

// LabelerProgress is one labeler's work on a batch.
type LabelerProgress struct {
	Labeler  string `json:"labeler"`
	Done     int    `json:"done"`     // labels submitted
	Skipped  int    `json:"skipped"`  // items skipped
	Assigned int    `json:"assigned"` // assignments ever given (done, skipped, open or lapsed)
	Open     int    `json:"open"`     // held now
}

// BatchLabelers is each labeler's progress on a batch (labels given by any
// path count as done), by name.
func (db *DB) BatchLabelers(ctx context.Context, batch string) ([]LabelerProgress, error) {
	rows, err := db.pool.Query(ctx, `
		WITH b AS (SELECT id FROM labeling_batches WHERE name = $1),
		     labs AS (SELECT labeler_id FROM comparisons WHERE batch_id = (SELECT id FROM b)
		              UNION SELECT labeler_id FROM assignments WHERE batch_id = (SELECT id FROM b))
		SELECT l.name,
		       (SELECT count(*) FROM comparisons c WHERE c.batch_id = (SELECT id FROM b) AND c.labeler_id = l.id),
		       (SELECT count(*) FROM assignments a WHERE a.batch_id = (SELECT id FROM b) AND a.labeler_id = l.id AND a.skip_reason IS NOT NULL),
		       (SELECT count(*) FROM assignments a WHERE a.batch_id = (SELECT id FROM b) AND a.labeler_id = l.id),
		       (SELECT count(*) FROM assignments a WHERE a.batch_id = (SELECT id FROM b) AND a.labeler_id = l.id
		                                            AND a.done_at IS NULL AND a.expires_at > now())
		FROM labs JOIN labelers l ON l.id = labs.labeler_id ORDER BY l.name`, batch)
	if err != nil {
		return nil, fmt.Errorf("postgres: labelers of batch %s: %w", batch, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LabelerProgress, error) {
		var p LabelerProgress
		return p, r.Scan(&p.Labeler, &p.Done, &p.Skipped, &p.Assigned, &p.Open)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: labelers of batch %s: %w", batch, err)
	}
	return out, nil
}

// Batches lists every labeling batch with its progress, newest first.
func (db *DB) Batches(ctx context.Context) ([]Batch, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+batchColumns+" FROM labeling_batches b ORDER BY b.id DESC")
	if err != nil {
		return nil, fmt.Errorf("postgres: batches: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Batch, error) {
		return scanBatch(r)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: batches: %w", err)
	}
	return out, nil
}

// BatchGuidelines is the Markdown guidelines of a batch.
func (db *DB) BatchGuidelines(ctx context.Context, name string) (string, error) {
	var g string
	if err := db.pool.QueryRow(ctx, "SELECT guidelines FROM labeling_batches WHERE name = $1", name).Scan(&g); err != nil {
		return "", fmt.Errorf("postgres: guidelines of batch %s: %w", name, translate(err))
	}
	return g, nil
}

// LabelerBatch is one labeler's progress in a batch, and the batch's.
type LabelerBatch struct {
	Batch    string
	Run      string
	Done     int // the labeler's labels in the batch
	Assigned int // items given to the labeler (done, skipped, open or lapsed)
	Labeled  int // items of the batch with a label
	Total    int // items of the batch
}

// ProgressOf is labeler's progress in batch, in one query (the labeling
// page shows it on every item).
func (db *DB) ProgressOf(ctx context.Context, batch, labeler string) (LabelerBatch, error) {
	p := LabelerBatch{Batch: batch}
	err := db.pool.QueryRow(ctx, `
		SELECT coalesce(b.run_id, ''), b.items,
		       (SELECT count(DISTINCT c.batch_item) FROM comparisons c WHERE c.batch_id = b.id),
		       (SELECT count(*) FROM comparisons c WHERE c.batch_id = b.id AND c.labeler_id = l.id),
		       (SELECT count(*) FROM assignments a WHERE a.batch_id = b.id AND a.labeler_id = l.id)
		FROM labeling_batches b LEFT JOIN labelers l ON l.name = $2
		WHERE b.name = $1`, batch, labeler).Scan(&p.Run, &p.Total, &p.Labeled, &p.Done, &p.Assigned)
	if err != nil {
		return LabelerBatch{}, fmt.Errorf("postgres: progress in batch %s: %w", batch, translate(err))
	}
	return p, nil
}

// BatchesToLabel lists the batches, oldest first, whose deadline has not
// passed and that have an item still wanting a label (a first one, or a
// second for the overlap share): what the labeling app offers.
func (db *DB) BatchesToLabel(ctx context.Context) ([]string, error) {
	return db.texts(ctx, "batches to label", `
		SELECT b.name FROM labeling_batches b
		WHERE (b.deadline IS NULL OR b.deadline > now())
		  AND EXISTS (SELECT 1 FROM labeling_batch_items i
		              WHERE i.batch_id = b.id AND i.item >= b.claim_from
		                AND public.item_labels(b.id, i.item) < public.item_labels_wanted(b.id, i.item, b.overlap))
		ORDER BY b.id`)
}
