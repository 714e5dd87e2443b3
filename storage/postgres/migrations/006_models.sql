-- Base models imported from Hugging Face folders (`instructflow model
-- import`). The weights, converted to the engine's F32 form, and the
-- tokenizer files are a verified checkpoint in the object store at key; the
-- row says what it is and which manifest to trust. A model never changes:
-- re-importing the same files finds the same manifest and adds nothing.

CREATE TABLE models (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    source           text NOT NULL,
    architecture     text NOT NULL,
    config           jsonb NOT NULL,
    dtypes           text[] NOT NULL,
    params           bigint NOT NULL CHECK (params > 0),
    key              text NOT NULL,
    manifest_sha256  text NOT NULL CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    weights_sha256   text NOT NULL CHECK (weights_sha256 ~ '^[0-9a-f]{64}$'),
    tokenizer_sha256 text NOT NULL CHECK (tokenizer_sha256 ~ '^[0-9a-f]{64}$'),
    tokenizer        jsonb NOT NULL,
    imported_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER models_immutable BEFORE UPDATE OR DELETE ON models
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER models_no_truncate BEFORE TRUNCATE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

GRANT SELECT, INSERT ON models TO instructflow_app;
