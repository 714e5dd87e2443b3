-- InstructFlow schema: preference data (labelers, prompts, responses,
-- demonstrations, comparisons, label snapshots), runs with their stages and
-- metrics, and an append-only audit log.
--
-- Comparisons, snapshots and the audit log are immutable: triggers refuse
-- UPDATE, DELETE and TRUNCATE. A correction to a comparison is a new row
-- whose `supersedes` names the old one.

CREATE TABLE labelers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    kind        text NOT NULL DEFAULT 'human' CHECK (kind IN ('human', 'simulated', 'imported')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prompts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    text        text NOT NULL,
    sha256      bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    split       text NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'heldout', 'test')),
    source      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE responses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id   bigint NOT NULL REFERENCES prompts (id),
    text        text NOT NULL,
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    -- where the text came from: an import, a demonstration, a policy sample
    source      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (prompt_id, sha256)
);

CREATE TABLE demonstrations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id   bigint NOT NULL REFERENCES prompts (id),
    response_id bigint NOT NULL REFERENCES responses (id),
    labeler_id  bigint REFERENCES labelers (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (prompt_id, response_id, labeler_id)
);

-- A comparison is one labeler's ranking of K >= 2 responses to one prompt.
-- response_ids keeps the order in which the responses were shown (position
-- bias needs it); ranks[i] is the rank of response_ids[i], 1 = best, equal
-- ranks are ties.
CREATE TABLE comparisons (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id     bigint NOT NULL REFERENCES prompts (id),
    labeler_id    bigint NOT NULL REFERENCES labelers (id),
    response_ids  bigint[] NOT NULL,
    ranks         smallint[] NOT NULL,
    -- SHA-256 of the content (prompt, responses in shown order, ranks,
    -- labeler): re-importing the same comparison adds nothing.
    content_sha256 bytea NOT NULL UNIQUE CHECK (length(content_sha256) = 32),
    supersedes    bigint UNIQUE REFERENCES comparisons (id),
    source        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(response_ids) >= 2),
    CHECK (cardinality(ranks) = cardinality(response_ids)),
    CHECK (array_position(ranks, NULL) IS NULL AND 1 <= ALL (ranks)),
    CHECK (array_position(response_ids, NULL) IS NULL),
    CHECK (supersedes IS NULL OR supersedes < id)
);
CREATE INDEX comparisons_prompt ON comparisons (prompt_id);
CREATE INDEX comparisons_labeler ON comparisons (labeler_id);

-- The comparisons in force: those no later comparison supersedes.
CREATE VIEW current_comparisons AS
    SELECT c.* FROM comparisons c
    WHERE NOT EXISTS (SELECT 1 FROM comparisons n WHERE n.supersedes = c.id);

-- A label snapshot freezes a set of comparisons. The ids are stored sorted,
-- and sha256 is the SHA-256 of their decimal forms joined by '\n', so anyone
-- can recompute it from an export.
CREATE TABLE label_snapshots (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> ''),
    comparison_ids  bigint[] NOT NULL,
    sha256          bytea NOT NULL CHECK (length(sha256) = 32),
    filter          jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    spec        jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stages (
    run_id              text NOT NULL REFERENCES runs (id),
    name                text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    snapshot_id         bigint REFERENCES label_snapshots (id),
    checkpoint_key      text,
    checkpoint_sha256   text,
    started_at          timestamptz,
    finished_at         timestamptz,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE metrics (
    run_id      text NOT NULL,
    stage       text NOT NULL,
    step        bigint NOT NULL CHECK (step >= 0),
    name        text NOT NULL,
    value       double precision NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, stage, name, step),
    FOREIGN KEY (run_id, stage) REFERENCES stages (run_id, name)
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT current_user,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}'
);

-- Immutability: the database itself refuses to change history.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed; insert a new row that supersedes the old one', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER comparisons_immutable BEFORE UPDATE OR DELETE ON comparisons
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER comparisons_no_truncate BEFORE TRUNCATE ON comparisons
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER label_snapshots_immutable BEFORE UPDATE OR DELETE ON label_snapshots
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER label_snapshots_no_truncate BEFORE TRUNCATE ON label_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Every insert of comparisons and snapshots is logged: one audit row per
-- statement (cheap for bulk imports), naming the id range.
CREATE FUNCTION audit_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint; lo bigint; hi bigint;
BEGIN
    SELECT count(*), min(id), max(id) INTO n, lo, hi FROM inserted;
    IF n > 0 THEN
        INSERT INTO audit_log (action, entity, entity_id, detail)
        VALUES ('insert', TG_TABLE_NAME, lo || '-' || hi, jsonb_build_object('rows', n));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER comparisons_audit AFTER INSERT ON comparisons
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION audit_inserts();
CREATE TRIGGER label_snapshots_audit AFTER INSERT ON label_snapshots
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION audit_inserts();
