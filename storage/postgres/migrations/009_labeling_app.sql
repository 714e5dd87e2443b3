-- People label in the browser (`instructflow serve`): sign-in links and
-- sessions, assignments of batch items to labelers (with overlap and a
-- lease), ratings and flags kept with each comparison, and submission
-- through functions that decide every id themselves.
--
-- Tokens (sign-in links, sessions) are stored as the SHA-256 of their text
-- only. The functions below take the raw session token and find the
-- labeler from it: whoever calls them (the web server as the runtime role,
-- or a labeling tool as instructflow_labeler) can act only as the labeler
-- whose session token it holds, only on that labeler's assignments.

ALTER TABLE labelers ADD COLUMN revoked_at timestamptz;

CREATE TABLE labeler_links (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    labeler_id    bigint NOT NULL REFERENCES labelers (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);

-- A session is a labeler's (labeler_id set) or the admin's (admin, with
-- the SHA-256 of the admin token that opened it: a new token ends it).
CREATE TABLE web_sessions (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    labeler_id    bigint REFERENCES labelers (id),
    admin         boolean NOT NULL DEFAULT false,
    admin_key     bytea CHECK (admin = (admin_key IS NOT NULL)),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    CHECK (admin = (labeler_id IS NULL))
);

-- How a batch is labeled: the share of items a second labeler gets, how
-- long an assignment is held, the guidelines (Markdown) and the flags a
-- labeler may tick per response (defaults from InstructGPT's labeling).
ALTER TABLE labeling_batches
    ADD COLUMN overlap double precision NOT NULL DEFAULT 0.1 CHECK (overlap >= 0 AND overlap <= 1),
    ADD COLUMN lease interval NOT NULL DEFAULT '30 minutes' CHECK (lease > '0'::interval),
    ADD COLUMN guidelines text NOT NULL DEFAULT '',
    ADD COLUMN flag_names text[] NOT NULL DEFAULT ARRAY[
        'fails to follow the instruction', 'hallucination', 'inappropriate for a customer assistant',
        'harmful advice', 'sexual or violent content'],
    -- Items below claim_from had all the labels they want when a claim
    -- passed them: claims look from there on, so a claim costs the items
    -- in progress, not the whole batch. (A label is taken back only by a
    -- correction that supersedes it, which labels the item again.)
    ADD COLUMN claim_from integer NOT NULL DEFAULT 0;

-- ratings[i] (1-7, NULL = not rated) and response_flags[i] (a JSON array
-- of flag names) belong to response_ids[i], in the shown order.
ALTER TABLE comparisons
    ADD COLUMN ratings smallint[],
    ADD COLUMN response_flags jsonb,
    ADD CHECK (ratings IS NULL OR (cardinality(ratings) = cardinality(response_ids)
                                   AND 1 <= ALL (array_replace(ratings, NULL, 1))
                                   AND 7 >= ALL (array_replace(ratings, NULL, 1)))),
    ADD CHECK (response_flags IS NULL OR (jsonb_typeof(response_flags) = 'array'
                                          AND jsonb_array_length(response_flags) = cardinality(response_ids)));

CREATE OR REPLACE VIEW current_comparisons AS
    SELECT c.* FROM comparisons c
    WHERE NOT EXISTS (SELECT 1 FROM comparisons n WHERE n.supersedes = c.id);

-- An assignment gives one batch item to one labeler, never twice to the
-- same one; shown_ids is the item's responses in the order this labeler
-- sees them (drawn per labeler and item). It is open until submitted
-- (comparison_id) or skipped (skip_reason); an open one past expires_at
-- goes back to the pool.
CREATE TABLE assignments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id       bigint NOT NULL,
    item           integer NOT NULL,
    labeler_id     bigint NOT NULL REFERENCES labelers (id),
    shown_ids      bigint[] NOT NULL,
    assigned_at    timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    done_at        timestamptz,
    comparison_id  bigint UNIQUE REFERENCES comparisons (id),
    skip_reason    text CHECK (skip_reason <> ''),
    FOREIGN KEY (batch_id, item) REFERENCES labeling_batch_items (batch_id, item),
    UNIQUE (batch_id, item, labeler_id),
    CHECK ((done_at IS NULL) = (comparison_id IS NULL AND skip_reason IS NULL))
);
CREATE INDEX assignments_labeler ON assignments (batch_id, labeler_id);

-- The labeler of a session token, or NULL (unknown, ended, expired,
-- revoked). It reads the sessions as their owner: my_assignments calls it
-- with the rights of whoever reads the view.
CREATE FUNCTION public.session_labeler(session_token text) RETURNS bigint LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.labeler_id FROM public.web_sessions s JOIN public.labelers l ON l.id = s.labeler_id
    WHERE s.token_sha256 = sha256(convert_to(session_token, 'UTF8'))
      AND s.ended_at IS NULL AND s.expires_at > now() AND l.revoked_at IS NULL
$$;

-- The labeler of a session token; refuses (IFR02) one that signs no one in.
CREATE FUNCTION public.require_labeler(session_token text) RETURNS bigint LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lab bigint := public.session_labeler(session_token);
BEGIN
    IF lab IS NULL THEN
        RAISE EXCEPTION 'not signed in: the session is unknown, ended, expired or revoked; sign in again from your link'
            USING ERRCODE = 'IFR02';
    END IF;
    RETURN lab;
END
$$;

-- Whether item wants a second label: a fixed share (the batch's overlap)
-- of its items, drawn from a hash of the batch and item, so every claim
-- agrees.
CREATE FUNCTION public.item_labels_wanted(batch bigint, item integer, overlap double precision)
    RETURNS integer LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN ('x' || substr(md5(batch || ':' || item), 1, 8))::bit(32)::bigint / 4294967296.0 < overlap
                THEN 2 ELSE 1 END
$$;

-- The labels in force of a batch item (a superseded one no longer counts).
CREATE FUNCTION public.item_labels(batch bigint, item integer) RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) FROM public.current_comparisons c WHERE c.batch_id = batch AND c.batch_item = item
$$;

-- claim_item gives the session's labeler an item of the batch to label:
-- its open assignment in the batch if it has one, else the first item that
-- still wants a label which this labeler has neither labeled nor skipped.
-- An item wants one label, or two for the overlap share; labels given and
-- assignments held by others count against that. Returns the assignment
-- id, or NULL when nothing is left for this labeler. Claims of one batch
-- take turns (an advisory lock), so two labelers never get the last label
-- of an item at once.
CREATE FUNCTION public.claim_item(session_token text, batch_name text) RETURNS bigint LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lab bigint := public.require_labeler(session_token);
    b public.labeling_batches%ROWTYPE;
    pick integer;
    aid bigint;
    first_open integer;
BEGIN
    SELECT * INTO b FROM public.labeling_batches WHERE name = batch_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no labeling batch %', batch_name USING ERRCODE = 'no_data_found';
    END IF;
    IF b.deadline < now() THEN
        RAISE EXCEPTION 'batch % closed at its deadline, %', batch_name, b.deadline USING ERRCODE = 'IFR04';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('instructflow claim ' || b.id, 0));
    SELECT a.id INTO aid FROM public.assignments a
    WHERE a.batch_id = b.id AND a.labeler_id = lab AND a.done_at IS NULL AND a.expires_at > now()
    ORDER BY a.id LIMIT 1;
    IF FOUND THEN
        RETURN aid;
    END IF;
    SELECT i.item INTO first_open FROM public.labeling_batch_items i
    WHERE i.batch_id = b.id AND i.item >= b.claim_from
      AND public.item_labels(b.id, i.item)
        < public.item_labels_wanted(b.id, i.item, b.overlap)
    ORDER BY i.item LIMIT 1;
    first_open := coalesce(first_open, b.items);
    IF first_open > b.claim_from THEN
        UPDATE public.labeling_batches SET claim_from = first_open WHERE id = b.id;
    END IF;
    SELECT i.item INTO pick FROM public.labeling_batch_items i
    WHERE i.batch_id = b.id AND i.item >= first_open
      AND NOT EXISTS (SELECT 1 FROM public.assignments a
                      WHERE a.batch_id = b.id AND a.item = i.item AND a.labeler_id = lab AND a.done_at IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM public.comparisons c
                      WHERE c.batch_id = b.id AND c.batch_item = i.item AND c.labeler_id = lab)
      AND public.item_labels(b.id, i.item)
        + (SELECT count(*) FROM public.assignments a
           WHERE a.batch_id = b.id AND a.item = i.item AND a.labeler_id <> lab
             AND a.done_at IS NULL AND a.expires_at > now())
        < public.item_labels_wanted(b.id, i.item, b.overlap)
    ORDER BY i.item LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The labeler's own lapsed assignment of the item is renewed, with the
    -- order it was shown in; otherwise the order is drawn now.
    UPDATE public.assignments SET expires_at = now() + b.lease, assigned_at = now()
    WHERE batch_id = b.id AND item = pick AND labeler_id = lab
    RETURNING id INTO aid;
    IF FOUND THEN
        RETURN aid;
    END IF;
    INSERT INTO public.assignments (batch_id, item, labeler_id, shown_ids, expires_at)
    SELECT b.id, pick, lab, (SELECT array_agg(u.rid ORDER BY random()) FROM unnest(i.response_ids) AS u (rid)),
           now() + b.lease
    FROM public.labeling_batch_items i WHERE i.batch_id = b.id AND i.item = pick
    RETURNING id INTO aid;
    RETURN aid;
END
$$;

-- open_assignment locks the session labeler's open assignment aid for
-- submitting or skipping it: IFR03 when it is not this labeler's, IFR04
-- when it is done or its lease has run out.
CREATE FUNCTION public.open_assignment(session_token text, aid bigint) RETURNS public.assignments LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lab bigint := public.require_labeler(session_token);
    a public.assignments%ROWTYPE;
BEGIN
    SELECT * INTO a FROM public.assignments WHERE id = aid FOR UPDATE;
    IF NOT FOUND OR a.labeler_id <> lab THEN
        RAISE EXCEPTION 'assignment % is not yours', aid USING ERRCODE = 'IFR03';
    END IF;
    IF a.done_at IS NOT NULL THEN
        RAISE EXCEPTION 'assignment % is done already', aid USING ERRCODE = 'IFR04';
    END IF;
    IF a.expires_at <= now() THEN
        RAISE EXCEPTION 'assignment % ran out of time and went back to the pool: open the next item', aid
            USING ERRCODE = 'IFR04';
    END IF;
    RETURN a;
END
$$;

-- submit_label stores the session labeler's ranking of assignment aid:
-- ranks, ratings (1-7 or NULL) and flags (a JSON array, per response, of
-- names from the batch's flag list), all in the shown order. The labeler,
-- prompt, responses, their order and the content hash come from the
-- database, never from the caller. Returns the comparison's id.
CREATE FUNCTION public.submit_label(session_token text, aid bigint, ranks smallint[], ratings smallint[], flags jsonb)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a public.assignments := public.open_assignment(session_token, aid);
    b public.labeling_batches%ROWTYPE;
    k integer := cardinality(a.shown_ids);
    bad text;
    cid bigint;
BEGIN
    SELECT * INTO b FROM public.labeling_batches WHERE id = a.batch_id;
    IF cardinality(ranks) IS DISTINCT FROM k OR array_ndims(ranks) <> 1 OR array_lower(ranks, 1) <> 1
       OR array_position(ranks, NULL) IS NOT NULL
       OR NOT (1 <= ALL (ranks) AND k >= ALL (ranks)) THEN
        RAISE EXCEPTION 'give each of the % responses a rank from 1 (best) to % (equal ranks tie)', k, k
            USING ERRCODE = 'IFR01';
    END IF;
    IF ratings IS NOT NULL AND (cardinality(ratings) <> k OR array_ndims(ratings) <> 1 OR array_lower(ratings, 1) <> 1
       OR NOT (1 <= ALL (array_replace(ratings, NULL, 1)) AND 7 >= ALL (array_replace(ratings, NULL, 1)))) THEN
        RAISE EXCEPTION 'ratings go from 1 to 7, one per response (or none)' USING ERRCODE = 'IFR01';
    END IF;
    IF flags IS NOT NULL THEN
        IF jsonb_typeof(flags) <> 'array' OR jsonb_array_length(flags) <> k
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(flags) AS f (v) WHERE jsonb_typeof(f.v) <> 'array') THEN
            RAISE EXCEPTION 'flags are a list per response' USING ERRCODE = 'IFR01';
        END IF;
        SELECT f.name INTO bad FROM jsonb_array_elements(flags) AS r (v), jsonb_array_elements_text(r.v) AS f (name)
        WHERE f.name <> ALL (b.flag_names) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unknown flag "%": this batch flags %', bad, array_to_string(b.flag_names, ', ')
                USING ERRCODE = 'IFR01';
        END IF;
    END IF;
    INSERT INTO public.comparisons (prompt_id, labeler_id, response_ids, ranks, ratings, response_flags,
                                    content_sha256, source, batch_id, batch_item)
    SELECT i.prompt_id, a.labeler_id, a.shown_ids, ranks, ratings, flags,
           sha256(convert_to('instructflow web label v1', 'UTF8') || int8send(a.id) || int8send(a.labeler_id)
                  || convert_to(array_to_string(ranks, ',') || ';' || coalesce(array_to_string(ratings, ',', '-'), ''), 'UTF8')),
           'web:' || b.name, a.batch_id, a.item
    FROM public.labeling_batch_items i WHERE i.batch_id = a.batch_id AND i.item = a.item
    RETURNING id INTO cid;
    UPDATE public.assignments SET done_at = now(), comparison_id = cid WHERE id = a.id;
    RETURN cid;
END
$$;

-- skip_item records that the session labeler skipped assignment aid, and
-- why; the item goes back to the pool for others.
CREATE FUNCTION public.skip_item(session_token text, aid bigint, reason text) RETURNS void LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a public.assignments := public.open_assignment(session_token, aid);
BEGIN
    IF reason IS NULL OR btrim(reason) = '' OR char_length(reason) > 1000 THEN
        RAISE EXCEPTION 'say why you skip (1 to 1000 characters)' USING ERRCODE = 'IFR01';
    END IF;
    UPDATE public.assignments SET done_at = now(), skip_reason = btrim(reason) WHERE id = a.id;
END
$$;

-- What a labeling tool logged in as instructflow_labeler sees: its own
-- assignments (the session token set with SET instructflow.session = '..'),
-- with the texts in the order shown.
CREATE VIEW my_assignments WITH (security_barrier) AS
    SELECT a.id, b.name AS batch, a.item, p.text AS prompt,
           (SELECT array_agg(r.text ORDER BY u.ord)
              FROM unnest(a.shown_ids) WITH ORDINALITY AS u (rid, ord) JOIN responses r ON r.id = u.rid) AS responses,
           b.flag_names, a.assigned_at, a.expires_at, a.done_at, a.skip_reason
    FROM assignments a
    JOIN labeling_batches b ON b.id = a.batch_id
    JOIN labeling_batch_items i ON i.batch_id = a.batch_id AND i.item = a.item
    JOIN prompts p ON p.id = i.prompt_id
    WHERE a.labeler_id = public.session_labeler(current_setting('instructflow.session', true));

-- Functions are executable by PUBLIC unless revoked.
REVOKE ALL ON FUNCTION public.session_labeler(text), public.require_labeler(text),
    public.item_labels_wanted(bigint, integer, double precision), public.item_labels(bigint, integer), public.claim_item(text, text),
    public.open_assignment(text, bigint), public.submit_label(text, bigint, smallint[], smallint[], jsonb),
    public.skip_item(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.session_labeler(text), public.claim_item(text, text), public.submit_label(text, bigint, smallint[], smallint[], jsonb),
    public.skip_item(text, bigint, text) TO instructflow_app, instructflow_labeler;

-- The labeling tools' role loses what let it forge or hide others' labels
-- (INSERT of any comparison with any labeler, supersedes or hash, and
-- reads of every batch): it labels through the functions above and reads
-- its own assignments through my_assignments.
REVOKE INSERT ON comparisons FROM instructflow_labeler;
REVOKE SELECT ON labeling_batches, labeling_batch_items, prompts, responses, labelers FROM instructflow_labeler;
GRANT SELECT ON my_assignments TO instructflow_labeler;

-- The web server (runtime role): sign-in links and sessions, revoking a
-- labeler, reading assignments for the pages and the dashboard.
GRANT SELECT, INSERT ON labeler_links, web_sessions TO instructflow_app;
GRANT UPDATE (used_at) ON labeler_links TO instructflow_app;
GRANT UPDATE (ended_at) ON web_sessions TO instructflow_app;
GRANT UPDATE (revoked_at) ON labelers TO instructflow_app;
GRANT SELECT ON assignments, my_assignments TO instructflow_app;
GRANT EXECUTE ON FUNCTION public.item_labels_wanted(bigint, integer, double precision), public.item_labels(bigint, integer)
    TO instructflow_app;
