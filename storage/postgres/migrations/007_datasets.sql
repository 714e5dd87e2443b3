-- Datasets: a user's demonstrations and prompts (`instructflow data import`,
-- or a task's through `data load-demo`). A dataset is a list of rows, each a
-- prompt (one row of prompts per distinct text, which carries the prompt's
-- split: a prompt is never on both sides) and, in a demonstration, its
-- target (a response of that prompt). Rows are append-only: a dataset grows
-- by imports, and importing the same content again adds nothing.

-- A conversation's turns ([{"role", "content"}, ...], ending with a user
-- turn) beside its text; NULL for a prompt that is one user turn.
ALTER TABLE prompts ADD COLUMN turns jsonb
    CHECK (turns IS NULL OR jsonb_typeof(turns) = 'array' AND jsonb_array_length(turns) > 0);

CREATE TABLE datasets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE imports
    ADD COLUMN dataset_id bigint REFERENCES datasets (id),
    DROP CONSTRAINT imports_format_check,
    ADD CONSTRAINT imports_format_check CHECK (
        dataset_id IS NULL AND format IN ('ranking', 'pairwise', 'hh')
        OR dataset_id IS NOT NULL AND format IN ('prompt-completion', 'messages', 'prompt', 'alpaca', 'hh'));

CREATE TABLE dataset_rows (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id      bigint NOT NULL REFERENCES datasets (id),
    kind            text NOT NULL CHECK (kind IN ('demonstration', 'prompt')),
    prompt_id       bigint NOT NULL REFERENCES prompts (id),
    response_id     bigint REFERENCES responses (id),
    -- SHA-256 of the kind, prompt text and target (dataset.Example.ContentHash)
    content_sha256  bytea NOT NULL CHECK (length(content_sha256) = 32),
    import_id       bigint REFERENCES imports (id),
    import_line     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset_id, content_sha256),
    CHECK ((kind = 'prompt') = (response_id IS NULL))
);
CREATE INDEX dataset_rows_prompt ON dataset_rows (prompt_id);

CREATE TRIGGER dataset_rows_immutable BEFORE UPDATE OR DELETE ON dataset_rows
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER dataset_rows_no_truncate BEFORE TRUNCATE ON dataset_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER dataset_rows_audit AFTER INSERT ON dataset_rows
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION audit_inserts();

GRANT SELECT, INSERT ON datasets, dataset_rows TO instructflow_app;
-- An import that brings the turns of a prompt stored without them (an HH
-- pair imported as labels) fills them in; nothing else changes a prompt.
GRANT UPDATE (turns) ON prompts TO instructflow_app;
