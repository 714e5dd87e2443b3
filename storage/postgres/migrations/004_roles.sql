-- Owner and runtime roles, and snapshot hashes that cover what they freeze.
--
-- From here on migrations run as the schema's owner (`instructflow db
-- migrate`, postgres.owner_url), and workers and the CLI log in as a runtime
-- role (postgres.url) that is a member of the NOLOGIN group role
-- instructflow_app. That role is no superuser and owns nothing, so it cannot
-- disable a trigger or set session_replication_role: the append-only tables
-- stay append-only for the application's own credentials. It holds only the
-- rights the code uses: SELECT and INSERT, UPDATE of the columns the code
-- updates (runs, stages, imports), and no DELETE or TRUNCATE anywhere.

-- Nobody but the owner creates objects in the schema (a role that could
-- would be able to shadow a table or function for another role).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'instructflow_app') THEN
        CREATE ROLE instructflow_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'instructflow_app' AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'role instructflow_app is a superuser or bypasses row security; it must be a plain NOLOGIN role (ALTER ROLE instructflow_app NOSUPERUSER NOBYPASSRLS)';
    END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL; -- another database of this server created it at the same moment
END
$$;

GRANT USAGE ON SCHEMA public TO instructflow_app;
GRANT SELECT ON schema_version TO instructflow_app;
GRANT SELECT, INSERT ON
    labelers, prompts, responses, demonstrations, comparisons, label_snapshots, metrics, audit_log,
    imports, labeling_batches, labeling_batch_items, reward_scores, runs, stages
    TO instructflow_app;
GRANT SELECT ON current_comparisons TO instructflow_app;
GRANT UPDATE (spec, status, result, error, updated_at) ON runs TO instructflow_app;
GRANT UPDATE (status, attempts, config_sha256, result, checkpoint_key, checkpoint_sha256, snapshot_id,
              error, started_at, finished_at) ON stages TO instructflow_app;
GRANT UPDATE (inserted) ON imports TO instructflow_app;

-- SECURITY DEFINER functions run as the owner: they name every object with
-- its schema and search only pg_catalog (then pg_temp, last), so no role can
-- slip a look-alike object into their path. The audit row names the session
-- user (who inserted), not the function's owner.
CREATE OR REPLACE FUNCTION public.audit_inserts() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint; lo bigint; hi bigint;
BEGIN
    SELECT count(*), min(id), max(id) INTO n, lo, hi FROM inserted;
    IF n > 0 THEN
        INSERT INTO public.audit_log (actor, action, entity, entity_id, detail)
        VALUES (session_user, 'insert', TG_TABLE_NAME, lo || '-' || hi, jsonb_build_object('rows', n));
    END IF;
    RETURN NULL;
END;
$$;

-- A snapshot's sha256 now covers the content it freezes. It is
--   SHA-256("instructflow label snapshot v2" || d(c1) || d(c2) || ...)
-- over its comparisons in ascending id order, where d(c) is the SHA-256 of
--   u64(id) || s(labeler) || s(prompt split) || s(prompt) || u64(K)
--   || s(response 1) || u64(rank 1) || ... || s(response K) || u64(rank K)
-- with the responses in shown order, u64 an 8-byte big-endian integer and
-- s(t) = u64(byte length of t in UTF-8) || t in UTF-8. Snapshots made before
-- (hash of the ids only) are rehashed here, once, by the owner; the audit log
-- keeps each old hash.
COMMENT ON COLUMN label_snapshots.sha256 IS
    'SHA-256 of the frozen content: see storage/postgres/migrations/004_roles.sql';

CREATE FUNCTION pg_temp.lp(t text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT int8send(octet_length(convert_to(t, 'UTF8'))::bigint) || convert_to(t, 'UTF8') $$;

ALTER TABLE label_snapshots DISABLE TRIGGER label_snapshots_immutable;
WITH digests AS (
    SELECT s.id AS snapshot_id, c.id,
           sha256(int8send(c.id) || pg_temp.lp(l.name) || pg_temp.lp(p.split) || pg_temp.lp(p.text)
                  || int8send(cardinality(c.response_ids)::bigint)
                  || (SELECT string_agg(pg_temp.lp(r.text) || int8send(u.rk::bigint), ''::bytea ORDER BY u.ord)
                      FROM unnest(c.response_ids, c.ranks) WITH ORDINALITY AS u (rid, rk, ord)
                      JOIN responses r ON r.id = u.rid)) AS digest
    FROM label_snapshots s
    CROSS JOIN LATERAL unnest(s.comparison_ids) AS x (id)
    JOIN comparisons c ON c.id = x.id
    JOIN labelers l ON l.id = c.labeler_id
    JOIN prompts p ON p.id = c.prompt_id
), hashes AS (
    SELECT d.snapshot_id, s.name, s.sha256 AS old_sha256,
           sha256(convert_to('instructflow label snapshot v2', 'UTF8') || string_agg(d.digest, ''::bytea ORDER BY d.id)) AS new_sha256
    FROM digests d JOIN label_snapshots s ON s.id = d.snapshot_id
    GROUP BY d.snapshot_id, s.name, s.sha256
), changed AS (
    UPDATE label_snapshots s SET sha256 = h.new_sha256
    FROM hashes h WHERE h.snapshot_id = s.id
    RETURNING s.id, h.name, h.old_sha256, h.new_sha256
)
INSERT INTO audit_log (action, entity, entity_id, detail)
SELECT 'rehash', 'label_snapshots', id::text,
       jsonb_build_object('name', name, 'old_sha256', encode(old_sha256, 'hex'), 'sha256', encode(new_sha256, 'hex'),
                          'why', 'migration 004: the hash covers the frozen content, not only the ids')
FROM changed;
ALTER TABLE label_snapshots ENABLE TRIGGER label_snapshots_immutable;
DROP FUNCTION pg_temp.lp(text);
