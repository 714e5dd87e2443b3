-- Preference data you can trust: imports, flags kept with each comparison,
-- whether the shown order is known, labeling batches, reward-model scores for
-- the audit, and a least-privilege role for labeling tools.

CREATE TABLE imports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,          -- the file name as given, or "-" for stdin
    format       text NOT NULL CHECK (format IN ('ranking', 'pairwise', 'hh')),
    file_sha256  bytea NOT NULL CHECK (length(file_sha256) = 32),
    rows_read    bigint NOT NULL,
    inserted     bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Problems found on import that keep the row but mark it (empty_response,
-- prompt_mismatch); order_known is false where the format does not say in
-- which order the responses were shown (pairwise, HH), so position-bias
-- statistics leave those rows out.
ALTER TABLE comparisons
    ADD COLUMN flags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN order_known boolean NOT NULL DEFAULT true,
    ADD COLUMN import_id bigint REFERENCES imports (id),
    ADD COLUMN import_line integer;

-- Texts carry the SHA-256 of their white-space-normalised form (computed by
-- InstructFlow on insert: fields joined by one space) and their length in
-- characters, so the audit finds near-duplicates and length bias without
-- re-reading every text. Rows from before get them here.
ALTER TABLE prompts ADD COLUMN norm_sha256 bytea;
ALTER TABLE responses ADD COLUMN norm_sha256 bytea, ADD COLUMN chars integer;
UPDATE prompts SET norm_sha256 = sha256(convert_to(regexp_replace(btrim(text), '\s+', ' ', 'g'), 'UTF8'));
UPDATE responses SET norm_sha256 = sha256(convert_to(regexp_replace(btrim(text), '\s+', ' ', 'g'), 'UTF8')),
                     chars = char_length(text);
ALTER TABLE prompts ALTER COLUMN norm_sha256 SET NOT NULL;
ALTER TABLE responses ALTER COLUMN norm_sha256 SET NOT NULL, ALTER COLUMN chars SET NOT NULL;

-- The view was expanded when created; it must name the new columns too.
CREATE OR REPLACE VIEW current_comparisons AS
    SELECT c.* FROM comparisons c
    WHERE NOT EXISTS (SELECT 1 FROM comparisons n WHERE n.supersedes = c.id);

-- Batches of responses waiting for labels (the human-in-the-loop stage).
CREATE TABLE labeling_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    run_id      text REFERENCES runs (id),
    deadline    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE labeling_batch_items (
    batch_id      bigint NOT NULL REFERENCES labeling_batches (id),
    prompt_id     bigint NOT NULL REFERENCES prompts (id),
    response_ids  bigint[] NOT NULL CHECK (cardinality(response_ids) >= 2),
    PRIMARY KEY (batch_id, prompt_id)
);

ALTER TABLE comparisons ADD COLUMN batch_id bigint REFERENCES labeling_batches (id);

-- Scores a trained reward model gave the responses of a snapshot, so the
-- audit can show the pairs where it most confidently disagrees with a label.
CREATE TABLE reward_scores (
    snapshot_id  bigint NOT NULL REFERENCES label_snapshots (id),
    model        text NOT NULL,          -- checkpoint key of the reward model
    response_id  bigint NOT NULL REFERENCES responses (id),
    score        double precision NOT NULL,
    PRIMARY KEY (snapshot_id, model, response_id)
);

-- The audit trigger writes as its owner, so roles that may insert
-- comparisons need no right on the audit log.
ALTER FUNCTION audit_inserts() SECURITY DEFINER SET search_path = public, pg_temp;

-- Least privilege for labeling tools: read the batches to label (with their
-- prompts and responses) and the labelers, insert comparisons. Nothing else:
-- no reads of other comparisons, runs or the audit log, no updates, no
-- deletes. Grant it to a login role: CREATE ROLE tool LOGIN PASSWORD '..' IN ROLE instructflow_labeler.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'instructflow_labeler') THEN
        CREATE ROLE instructflow_labeler NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO instructflow_labeler;
GRANT SELECT ON labeling_batches, labeling_batch_items, prompts, responses, labelers TO instructflow_labeler;
GRANT INSERT (prompt_id, labeler_id, response_ids, ranks, content_sha256, supersedes, source, batch_id)
    ON comparisons TO instructflow_labeler;
