-- A comparison ranks responses to its own prompt, and a labeling batch's
-- item shows responses to its own prompt: a row whose response_ids name a
-- missing response or another prompt's is refused, whoever inserts it (the
-- labeling tools' role could otherwise pair a prompt with any responses,
-- and the reward model would train on the forgery). Checked once per
-- statement over all its rows, so a bulk import pays one join.
CREATE FUNCTION public.refuse_foreign_responses() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    SELECT i.prompt_id, u.rid INTO bad
    FROM inserted i CROSS JOIN LATERAL unnest(i.response_ids) AS u (rid)
    LEFT JOIN public.responses r ON r.id = u.rid AND r.prompt_id = i.prompt_id
    WHERE r.id IS NULL
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: response % is not a response to prompt %', TG_TABLE_NAME, bad.rid, bad.prompt_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER comparisons_own_responses AFTER INSERT ON comparisons
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_foreign_responses();
CREATE TRIGGER labeling_batch_items_own_responses AFTER INSERT ON labeling_batch_items
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION public.refuse_foreign_responses();
