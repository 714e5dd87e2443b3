package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/preference"
)

// auditListLimit caps each list of rows in an audit (counts stay complete).
const auditListLimit = 200

// AuditCounts computes, in SQL, the aggregates of a label audit over a
// snapshot (or, with snapshot "", over all current comparisons). The work is
// set-based: the comparisons are expanded once into response pairs in
// temporary tables, and every statistic is a grouped query over them.
func (db *DB) AuditCounts(ctx context.Context, snapshot string) (preference.AuditInput, error) {
	in := preference.AuditInput{Scope: "all current comparisons", FlagCounts: map[string]int64{}}
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		var snapID *int64
		if snapshot != "" {
			s, err := db.Snapshot(ctx, snapshot)
			if err != nil {
				return err
			}
			snapID = &s.ID
			in.Scope = "snapshot " + snapshot
		}
		if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '256MB'"); err != nil {
			return err
		}
		for _, q := range auditSetup {
			args := []any{}
			if q.snap {
				args = append(args, snapID)
			}
			if _, err := tx.Exec(ctx, q.sql, args...); err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM a_scope").Scan(&in.Comparisons); err != nil {
			return err
		}
		if err := auditLabelers(ctx, tx, &in); err != nil {
			return err
		}
		if err := auditJudgements(ctx, tx, &in, snapID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			SELECT count(*),
			       coalesce(sum(m * (m - 1) / 2), 0),
			       coalesce(sum((np * (np - 1) + nm * (nm - 1) + nz * (nz - 1)) / 2), 0),
			       coalesce(sum((m * m - np * np - nm * nm - nz * nz)::float8 / (m - 1)), 0),
			       coalesce(sum(np), 0), coalesce(sum(nm), 0), coalesce(sum(nz), 0)
			FROM a_items WHERE m >= 2`).Scan(&in.AgreementItems, &in.VotePairs, &in.AgreeingPairs, &in.AlphaObserved,
			&in.AlphaCategories[0], &in.AlphaCategories[1], &in.AlphaCategories[2]); err != nil {
			return fmt.Errorf("agreement: %w", err)
		}
		return auditRows(ctx, tx, &in, snapID)
	})
	if err != nil {
		return in, fmt.Errorf("postgres: audit: %w", translate(err))
	}
	return in, nil
}

var auditSetup = []struct {
	name string
	sql  string
	snap bool // takes the snapshot id (or NULL) as $1
}{
	{"scope", `CREATE TEMP TABLE a_scope ON COMMIT DROP AS
		SELECT c.id, c.prompt_id, c.labeler_id, c.response_ids, c.ranks, c.order_known, c.flags, c.import_line,
		       c.ratings, c.response_flags, c.batch_id
		FROM comparisons c
		WHERE $1::bigint IS NULL AND NOT EXISTS (SELECT 1 FROM comparisons n WHERE n.supersedes = c.id)
		UNION ALL
		SELECT c.id, c.prompt_id, c.labeler_id, c.response_ids, c.ranks, c.order_known, c.flags, c.import_line,
		       c.ratings, c.response_flags, c.batch_id
		FROM label_snapshots s CROSS JOIN LATERAL unnest(s.comparison_ids) AS x (id)
		JOIN comparisons c ON c.id = x.id
		WHERE s.id = $1`, true},
	// Responses in scope, with length and a normalised-text hash.
	{"scope stats", `ANALYZE a_scope`, false},
	{"responses", `CREATE TEMP TABLE a_resp ON COMMIT DROP AS
		SELECT r.id, r.chars AS len, r.norm_sha256 AS norm
		FROM (SELECT DISTINCT unnest(response_ids) AS id FROM a_scope) s JOIN responses r USING (id)`, false},
	{"responses index", `CREATE UNIQUE INDEX ON a_resp (id)`, false},
	// Every pair of responses of every comparison: lo < hi by id; vote +1
	// when lo is preferred, -1 when hi is, 0 for a tie.
	{"pairs", `CREATE TEMP TABLE a_pairs ON COMMIT DROP AS
		SELECT s.id AS cid, s.prompt_id, s.labeler_id,
		       least(x.rid, y.rid) AS lo, greatest(x.rid, y.rid) AS hi,
		       CASE WHEN x.rk = y.rk THEN 0 WHEN (x.rk < y.rk) = (x.rid < y.rid) THEN 1 ELSE -1 END AS vote,
		       CASE WHEN x.rk < y.rk THEN x.rid WHEN y.rk < x.rk THEN y.rid END AS winner,
		       CASE WHEN x.rk < y.rk THEN y.rid WHEN y.rk < x.rk THEN x.rid END AS loser
		FROM a_scope s
		CROSS JOIN LATERAL unnest(s.response_ids, s.ranks) WITH ORDINALITY AS x (rid, rk, pos)
		CROSS JOIN LATERAL unnest(s.response_ids, s.ranks) WITH ORDINALITY AS y (rid, rk, pos)
		WHERE x.pos < y.pos`, false},
	// Each labeler's latest vote on each item.
	{"votes", `CREATE TEMP TABLE a_votes ON COMMIT DROP AS
		SELECT DISTINCT ON (prompt_id, lo, hi, labeler_id) prompt_id, lo, hi, labeler_id, vote
		FROM a_pairs ORDER BY prompt_id, lo, hi, labeler_id, cid DESC`, false},
	{"items", `CREATE TEMP TABLE a_items ON COMMIT DROP AS
		SELECT prompt_id, lo, hi, count(*) AS m,
		       count(*) FILTER (WHERE vote = 1) AS np,
		       count(*) FILTER (WHERE vote = -1) AS nm,
		       count(*) FILTER (WHERE vote = 0) AS nz
		FROM a_votes GROUP BY prompt_id, lo, hi`, false},
	{"analyze", `ANALYZE a_resp, a_pairs, a_votes, a_items`, false},
}

func auditLabelers(ctx context.Context, tx pgx.Tx, in *preference.AuditInput) error {
	rows, err := tx.Query(ctx, `
		WITH vol AS (
			SELECT labeler_id, count(*) AS comparisons,
			       count(*) FILTER (WHERE order_known AND ranks[1] = 1 AND array_position(ranks[2:], 1::smallint) IS NULL) AS first_wins,
			       count(*) FILTER (WHERE order_known AND (SELECT count(*) FROM unnest(ranks) r WHERE r = 1) = 1) AS pos_n,
			       coalesce(sum(1.0 / cardinality(ranks)) FILTER (WHERE order_known AND (SELECT count(*) FROM unnest(ranks) r WHERE r = 1) = 1), 0) AS pos_exp,
			       coalesce(sum((1.0 / cardinality(ranks)) * (1 - 1.0 / cardinality(ranks))) FILTER (WHERE order_known AND (SELECT count(*) FROM unnest(ranks) r WHERE r = 1) = 1), 0) AS pos_var
			FROM a_scope GROUP BY labeler_id
		), pairs AS (
			SELECT p.labeler_id, count(*) AS pairs, count(*) FILTER (WHERE vote = 0) AS ties,
			       count(*) FILTER (WHERE vote <> 0 AND w.len <> l.len) AS len_pairs,
			       count(*) FILTER (WHERE vote <> 0 AND w.len > l.len) AS longer_wins
			FROM a_pairs p
			LEFT JOIN a_resp w ON w.id = p.winner
			LEFT JOIN a_resp l ON l.id = p.loser
			GROUP BY p.labeler_id
		), loo AS (
			-- the others' counts on the item, without this labeler's vote
			SELECT v.labeler_id,
			       count(*) FILTER (WHERE maj IS NOT NULL) AS total,
			       count(*) FILTER (WHERE maj = v.vote) AS agree
			FROM a_votes v
			JOIN a_items i USING (prompt_id, lo, hi)
			CROSS JOIN LATERAL (
				SELECT CASE
					WHEN op > om AND op > oz THEN 1
					WHEN om > op AND om > oz THEN -1
					WHEN oz > op AND oz > om THEN 0
				END AS maj
				FROM (SELECT i.np - (v.vote = 1)::int AS op, i.nm - (v.vote = -1)::int AS om, i.nz - (v.vote = 0)::int AS oz) o
			) mj
			WHERE i.m >= 3
			GROUP BY v.labeler_id
		), contra_pairs AS (
			-- response pairs a labeler ranked both ways: c1 ranks lo over hi,
			-- c2 hi over lo
			SELECT labeler_id, lo, hi, min(cid) FILTER (WHERE vote = 1) AS c1, min(cid) FILTER (WHERE vote = -1) AS c2
			FROM a_pairs GROUP BY labeler_id, prompt_id, lo, hi
			HAVING bool_or(vote = 1) AND bool_or(vote = -1)
		), contra AS (
			-- the count, and the first pair (by comparison ids) as the example
			SELECT DISTINCT ON (labeler_id) labeler_id, count(*) OVER (PARTITION BY labeler_id) AS n, c1, c2, lo, hi
			FROM contra_pairs ORDER BY labeler_id, least(c1, c2), greatest(c1, c2), lo, hi
		)
		SELECT l.name, vol.comparisons, coalesce(pairs.pairs, 0), coalesce(pairs.ties, 0),
		       coalesce(loo.agree, 0), coalesce(loo.total, 0),
		       vol.pos_n, vol.first_wins, vol.pos_exp::float8, vol.pos_var::float8,
		       coalesce(pairs.len_pairs, 0), coalesce(pairs.longer_wins, 0),
		       coalesce(contra.n, 0), coalesce(contra.c1, 0), coalesce(contra.c2, 0), coalesce(contra.lo, 0), coalesce(contra.hi, 0)
		FROM vol JOIN labelers l ON l.id = vol.labeler_id
		LEFT JOIN pairs USING (labeler_id)
		LEFT JOIN loo USING (labeler_id)
		LEFT JOIN contra USING (labeler_id)
		ORDER BY vol.comparisons DESC, l.name`)
	if err != nil {
		return fmt.Errorf("labelers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l preference.LabelerCounts
		if err := rows.Scan(&l.Name, &l.Comparisons, &l.Pairs, &l.TiePairs, &l.LOOAgree, &l.LOOTotal,
			&l.PositionN, &l.PositionFirstWins, &l.PositionExpected, &l.PositionVariance,
			&l.LengthPairs, &l.LongerWins, &l.Contradictions, &l.ContradictionExample[0], &l.ContradictionExample[1],
			&l.ContradictionPair[0], &l.ContradictionPair[1]); err != nil {
			return fmt.Errorf("labelers: %w", err)
		}
		in.Labelers = append(in.Labelers, l)
	}
	return rows.Err()
}

// auditJudgements adds what the labeling app records besides ranks, per
// labeler: responses flagged of those labeled in the app, items skipped
// (in the scope's batches; all of them for all current comparisons), and
// rated pairs with different ranks whose ratings say the opposite.
func auditJudgements(ctx context.Context, tx pgx.Tx, in *preference.AuditInput, snapID *int64) error {
	rows, err := tx.Query(ctx, `
		WITH app AS (
			SELECT s.labeler_id, count(*) AS responses,
			       count(*) FILTER (WHERE jsonb_array_length(f.v) > 0) AS flagged
			FROM a_scope s CROSS JOIN LATERAL jsonb_array_elements(s.response_flags) AS f (v)
			WHERE s.response_flags IS NOT NULL
			GROUP BY s.labeler_id
		), rated AS (
			SELECT s.labeler_id, count(*) AS pairs,
			       count(*) FILTER (WHERE (a.rk < b.rk AND a.rt < b.rt) OR (b.rk < a.rk AND b.rt < a.rt)) AS inverted
			FROM a_scope s
			CROSS JOIN LATERAL unnest(s.ranks, s.ratings) WITH ORDINALITY AS a (rk, rt, i)
			CROSS JOIN LATERAL unnest(s.ranks, s.ratings) WITH ORDINALITY AS b (rk, rt, j)
			WHERE s.ratings IS NOT NULL AND a.i < b.j AND a.rk <> b.rk AND a.rt IS NOT NULL AND b.rt IS NOT NULL
			GROUP BY s.labeler_id
		), skips AS (
			SELECT a.labeler_id, count(*) AS skipped FROM assignments a
			WHERE a.skip_reason IS NOT NULL
			  AND ($1::bigint IS NULL OR a.batch_id IN (SELECT batch_id FROM a_scope))
			GROUP BY a.labeler_id
		)
		SELECT l.name, coalesce(app.responses, 0), coalesce(app.flagged, 0),
		       coalesce(rated.pairs, 0), coalesce(rated.inverted, 0), coalesce(skips.skipped, 0),
		       (SELECT count(*) FROM a_scope s WHERE s.labeler_id = l.id AND s.response_flags IS NOT NULL)
		FROM labelers l
		LEFT JOIN app ON app.labeler_id = l.id
		LEFT JOIN rated ON rated.labeler_id = l.id
		LEFT JOIN skips ON skips.labeler_id = l.id
		WHERE app.labeler_id IS NOT NULL OR skips.labeler_id IS NOT NULL
		ORDER BY l.name`, snapID)
	if err != nil {
		return fmt.Errorf("judgements: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var j preference.JudgementCounts
		if err := rows.Scan(&name, &j.Responses, &j.Flagged, &j.RatedPairs, &j.Inverted, &j.Skipped, &j.Labeled); err != nil {
			return fmt.Errorf("judgements: %w", err)
		}
		i := slices.IndexFunc(in.Labelers, func(l preference.LabelerCounts) bool { return l.Name == name })
		if i < 0 { // skipped, labeled nothing in scope
			in.Labelers = append(in.Labelers, preference.LabelerCounts{Name: name})
			i = len(in.Labelers) - 1
		}
		in.Labelers[i].Judgements = j
	}
	return rows.Err()
}

func auditRows(ctx context.Context, tx pgx.Tx, in *preference.AuditInput, snapID *int64) error {
	// Duplicates: one labeler, the same prompt, the same responses with the
	// same ranks (in any shown order); near when equal only after
	// normalising white space.
	rows, err := tx.Query(ctx, `
		WITH cand AS (
			-- only comparisons whose labeler judged a prompt with the same
			-- normalised text more than once can be duplicates
			SELECT id, labeler_id, prompt_id, response_ids, ranks, pnorm FROM (
				SELECT s.id, s.labeler_id, s.prompt_id, s.response_ids, s.ranks, p.norm_sha256 AS pnorm,
				       count(*) OVER (PARTITION BY s.labeler_id, p.norm_sha256) AS n
				FROM a_scope s JOIN prompts p ON p.id = s.prompt_id) x
			WHERE n > 1
		), keyed AS (
			SELECT c.id, c.labeler_id,
			       (SELECT array_agg(r.norm || int2send(u.rk) ORDER BY r.norm, u.rk)
			          FROM unnest(c.response_ids, c.ranks) AS u (rid, rk) JOIN a_resp r ON r.id = u.rid) AS norm_key,
			       c.pnorm,
			       c.prompt_id::text || '/' || (SELECT string_agg(u.rid || ':' || u.rk, ',' ORDER BY u.rid)
			          FROM unnest(c.response_ids, c.ranks) AS u (rid, rk)) AS exact_key
			FROM cand c
		)
		SELECT l.name, array_agg(k.id ORDER BY k.id), count(DISTINCT k.exact_key) > 1
		FROM keyed k JOIN labelers l ON l.id = k.labeler_id
		GROUP BY l.name, k.pnorm, k.norm_key HAVING count(*) > 1
		ORDER BY count(*) DESC, min(k.id) LIMIT $1`, auditListLimit)
	if err != nil {
		return fmt.Errorf("duplicates: %w", err)
	}
	for rows.Next() {
		var d preference.DuplicateGroup
		if err := rows.Scan(&d.Labeler, &d.ComparisonIDs, &d.Near); err != nil {
			rows.Close()
			return fmt.Errorf("duplicates: %w", err)
		}
		in.Duplicates = append(in.Duplicates, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("duplicates: %w", err)
	}

	degenerate, err := tx.Query(ctx, `
		SELECT DISTINCT ON (p.cid) p.cid, l.name, s.import_line, 'responses ' || p.lo || ' and ' || p.hi
		FROM a_pairs p
		JOIN a_resp a ON a.id = p.lo JOIN a_resp b ON b.id = p.hi
		JOIN a_scope s ON s.id = p.cid JOIN labelers l ON l.id = p.labeler_id
		WHERE a.norm = b.norm ORDER BY p.cid LIMIT $1`, auditListLimit)
	if err != nil {
		return fmt.Errorf("degenerate pairs: %w", err)
	}
	if in.DegeneratePairs, err = pgx.CollectRows(degenerate, pgx.RowToStructByPos[preference.RowRef]); err != nil {
		return fmt.Errorf("degenerate pairs: %w", err)
	}

	flagged, err := tx.Query(ctx, `
		SELECT s.id, l.name, s.import_line, s.flags FROM a_scope s JOIN labelers l ON l.id = s.labeler_id
		WHERE cardinality(s.flags) > 0 ORDER BY s.id LIMIT $1`, auditListLimit)
	if err != nil {
		return fmt.Errorf("flagged rows: %w", err)
	}
	for flagged.Next() {
		var f preference.FlaggedRow
		if err := flagged.Scan(&f.ComparisonID, &f.Labeler, &f.ImportLine, &f.Flags); err != nil {
			flagged.Close()
			return fmt.Errorf("flagged rows: %w", err)
		}
		in.FlaggedRows = append(in.FlaggedRows, f)
	}
	flagged.Close()
	counts, err := tx.Query(ctx, `SELECT f, count(*) FROM a_scope, unnest(flags) AS f GROUP BY f`)
	if err != nil {
		return fmt.Errorf("flag counts: %w", err)
	}
	for counts.Next() {
		var f string
		var n int64
		if err := counts.Scan(&f, &n); err != nil {
			counts.Close()
			return fmt.Errorf("flag counts: %w", err)
		}
		in.FlagCounts[f] = n
	}
	counts.Close()

	if snapID == nil {
		return nil
	}
	rm, err := tx.Query(ctx, `
		SELECT p.cid, l.name, w.model, w.score, o.score, 1 / (1 + exp(o.score - w.score))
		FROM a_pairs p
		JOIN reward_scores w ON w.snapshot_id = $1 AND w.response_id = p.winner
		JOIN reward_scores o ON o.snapshot_id = $1 AND o.response_id = p.loser AND o.model = w.model
		JOIN labelers l ON l.id = p.labeler_id
		WHERE p.vote <> 0 AND o.score > w.score
		ORDER BY o.score - w.score DESC, p.cid LIMIT 20`, *snapID)
	if err != nil {
		return fmt.Errorf("reward-model disagreements: %w", err)
	}
	if in.RMDisagreements, err = pgx.CollectRows(rm, pgx.RowToStructByPos[preference.RMDisagreement]); err != nil {
		return fmt.Errorf("reward-model disagreements: %w", err)
	}
	return nil
}

// RecordRewardScores stores a reward model's scores of responses of a
// snapshot (for the audit's review list). Scores already stored are kept.
func (db *DB) RecordRewardScores(ctx context.Context, snapshot, model string, responseIDs []int64, scores []float64) error {
	if len(responseIDs) != len(scores) {
		panic("postgres: RecordRewardScores: ids and scores differ in length")
	}
	_, err := db.pool.Exec(ctx, `
		INSERT INTO reward_scores (snapshot_id, model, response_id, score)
		SELECT s.id, $2, x.rid, x.score FROM label_snapshots s, unnest($3::bigint[], $4::float8[]) AS x (rid, score)
		WHERE s.name = $1
		ON CONFLICT DO NOTHING`, snapshot, model, responseIDs, scores)
	if err != nil {
		return fmt.Errorf("postgres: record reward scores for %s: %w", snapshot, err)
	}
	return nil
}
