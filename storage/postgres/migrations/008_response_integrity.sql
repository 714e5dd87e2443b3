-- A comparison ranks responses to its own prompt, and a labeling batch's
-- item shows responses to its own prompt: a row whose response_ids name a
-- missing response or another prompt's is refused, whoever inserts it (the
-- labeling tools' role could otherwise pair a prompt with any responses,
-- and the reward model would train on the forgery). A comparison of a
-- batch item must rank that item's prompt and responses. Checked once per
-- statement over all its rows, so a bulk import pays one join; EXECUTE
-- plans the check for each statement's row count (a cached plan made for a
-- one-row insert would scan the responses once per row of a 1M-row import,
-- and the other way round). SQLSTATE IFR01 is what the code reports as bad
-- input. Rows stored before this migration are not checked here: a
-- snapshot that reads one refuses it, naming the comparison.
CREATE FUNCTION public.refuse_foreign_responses() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
    n bigint;
BEGIN
    EXECUTE 'SELECT i.prompt_id, u.rid
        FROM inserted i CROSS JOIN LATERAL unnest(i.response_ids) AS u (rid)
        LEFT JOIN public.responses r ON r.id = u.rid AND r.prompt_id = i.prompt_id
        WHERE r.id IS NULL
        LIMIT 1' INTO bad;
    GET DIAGNOSTICS n = ROW_COUNT; -- EXECUTE sets no FOUND
    IF n > 0 THEN
        RAISE EXCEPTION '%: response % is not a response to prompt %', TG_TABLE_NAME, bad.rid, bad.prompt_id
            USING ERRCODE = 'IFR01';
    END IF;
    IF TG_TABLE_NAME = 'comparisons' THEN
        EXECUTE 'SELECT b.item, b.batch_id
            FROM inserted i
            JOIN public.labeling_batch_items b ON b.batch_id = i.batch_id AND b.item = i.batch_item
            WHERE i.prompt_id <> b.prompt_id
               OR NOT (i.response_ids @> b.response_ids AND i.response_ids <@ b.response_ids)
            LIMIT 1' INTO bad;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RAISE EXCEPTION 'comparisons: a comparison of item % of batch % ranks other responses than the item shows', bad.item, bad.batch_id
                USING ERRCODE = 'IFR01';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER comparisons_own_responses AFTER INSERT ON comparisons
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_foreign_responses();
CREATE TRIGGER labeling_batch_items_own_responses AFTER INSERT ON labeling_batch_items
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_foreign_responses();
