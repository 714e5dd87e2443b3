-- Every committed checkpoint's manifest hash, as its stage reported it: a
-- resume checks the checkpoint it starts from against the newest record of
-- its step, so a checkpoint altered in the object store (even with a
-- manifest that matches its files) is not trusted. Append-only.

CREATE TABLE checkpoints (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          text NOT NULL,
    stage           text NOT NULL,
    step            bigint NOT NULL CHECK (step >= 0),
    key             text NOT NULL,
    manifest_sha256 text NOT NULL CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, stage, step, manifest_sha256),
    FOREIGN KEY (run_id, stage) REFERENCES stages (run_id, name)
);

CREATE TRIGGER checkpoints_immutable BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

GRANT SELECT, INSERT ON checkpoints TO instructflow_app;

-- Stage names are the pipeline's (package runstate), not any id.
ALTER TABLE stages DROP CONSTRAINT stages_name_check,
    ADD CONSTRAINT stages_name_check CHECK (name IN ('sft', 'labels', 'snapshot', 'rm', 'gate', 'ppo', 'eval'));
