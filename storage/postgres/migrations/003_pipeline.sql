-- The durable pipeline: labeling batches whose items are numbered (a prompt
-- may come back in several rounds with fresh samples), comparisons that say
-- which item they label, and the records a resumed run reads: each stage's
-- result, how many times it started training, and the hash of the config it
-- ran with; each run's final report.

ALTER TABLE labeling_batch_items DROP CONSTRAINT labeling_batch_items_pkey;
ALTER TABLE labeling_batch_items ADD COLUMN item integer;
UPDATE labeling_batch_items i SET item = n.item
FROM (SELECT batch_id, prompt_id, (row_number() OVER (PARTITION BY batch_id ORDER BY prompt_id) - 1)::integer AS item
      FROM labeling_batch_items) n
WHERE n.batch_id = i.batch_id AND n.prompt_id = i.prompt_id;
ALTER TABLE labeling_batch_items ALTER COLUMN item SET NOT NULL, ADD PRIMARY KEY (batch_id, item);

ALTER TABLE labeling_batches ADD COLUMN items integer NOT NULL DEFAULT 0 CHECK (items >= 0);

ALTER TABLE comparisons ADD COLUMN batch_item integer,
    ADD FOREIGN KEY (batch_id, batch_item) REFERENCES labeling_batch_items (batch_id, item);
CREATE INDEX comparisons_batch ON comparisons (batch_id, batch_item) WHERE batch_id IS NOT NULL;
GRANT INSERT (batch_item) ON comparisons TO instructflow_labeler;

CREATE OR REPLACE VIEW current_comparisons AS
    SELECT c.* FROM comparisons c
    WHERE NOT EXISTS (SELECT 1 FROM comparisons n WHERE n.supersedes = c.id);

ALTER TABLE stages
    ADD COLUMN result jsonb,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN config_sha256 text,
    ADD COLUMN error text;

ALTER TABLE runs ADD COLUMN result jsonb, ADD COLUMN error text;

ALTER TABLE stages DROP CONSTRAINT stages_status_check,
    ADD CONSTRAINT stages_status_check
    CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'skipped', 'cancelled'));
