-- The psql side of scripts/bench_labels.sh: \copy the same rows as CSV and
-- normalise them into the same schema with the same set-based statements
-- that `instructflow labels import` runs, hashes computed in SQL. To keep the
-- comparison conservative the psql side does the least work that fills the
-- schema: it stores the exact-text hash where the import stores the hash of
-- the white-space-normalised text.
CREATE TEMP TABLE raw (prompt text, chosen text, rejected text, labeler text);
\copy raw FROM pstdin WITH (FORMAT csv)
CREATE TEMP TABLE staged AS
    SELECT row_number() OVER () AS line, labeler, prompt, sha256(convert_to(prompt, 'UTF8')) AS prompt_sha,
           ARRAY[chosen, rejected] AS responses,
           ARRAY[sha256(convert_to(chosen, 'UTF8')), sha256(convert_to(rejected, 'UTF8'))] AS response_shas,
           sha256(convert_to(labeler || E'\x1f' || prompt || E'\x1f' || chosen || E'\x1f' || rejected, 'UTF8')) AS content_sha
    FROM raw;
INSERT INTO labelers (name, kind) SELECT DISTINCT labeler, 'imported' FROM staged ON CONFLICT (name) DO NOTHING;
INSERT INTO prompts (text, sha256, norm_sha256, source)
    SELECT DISTINCT ON (prompt_sha) prompt, prompt_sha,
           prompt_sha, 'psql'
    FROM staged ORDER BY prompt_sha
    ON CONFLICT (sha256) DO NOTHING;
INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
    SELECT DISTINCT ON (p.id, r.sha) p.id, r.text, r.sha,
           r.sha, char_length(r.text), 'psql'
    FROM staged s JOIN prompts p ON p.sha256 = s.prompt_sha
    CROSS JOIN LATERAL unnest(s.responses, s.response_shas) AS r (text, sha)
    ORDER BY p.id, r.sha
    ON CONFLICT (prompt_id, sha256) DO NOTHING;
INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, order_known, source)
    SELECT p.id, l.id,
           (SELECT array_agg(r.id ORDER BY u.ord) FROM unnest(s.response_shas) WITH ORDINALITY AS u (sha, ord)
              JOIN responses r ON r.prompt_id = p.id AND r.sha256 = u.sha),
           '{1,2}', s.content_sha, false, 'psql'
    FROM (SELECT DISTINCT ON (content_sha) * FROM staged ORDER BY content_sha, line) s
    JOIN prompts p ON p.sha256 = s.prompt_sha JOIN labelers l ON l.name = s.labeler
    ORDER BY s.line
    ON CONFLICT (content_sha256) DO NOTHING;
