-- The psql side of scripts/bench_data.sh: \copy the same demonstrations as
-- CSV and store them in the same schema with the same set-based statements
-- that `instructflow data import` runs, hashes and splits computed in SQL.
-- To keep the comparison conservative the psql side does the least work that
-- fills the schema: it stores the exact-text hash where the import stores the
-- hash of the white-space-normalised text, and checks no split conflicts.
CREATE TEMP TABLE raw (prompt text, completion text);
\copy raw FROM pstdin WITH (FORMAT csv)
CREATE TEMP TABLE staged AS
    SELECT row_number() OVER () AS line, prompt, sha256(convert_to(prompt, 'UTF8')) AS prompt_sha,
           completion, sha256(convert_to(completion, 'UTF8')) AS completion_sha,
           sha256(convert_to('demonstration' || E'\x1f' || prompt || E'\x1f' || completion, 'UTF8')) AS content_sha
    FROM raw;
INSERT INTO datasets (name) VALUES ('psql');
INSERT INTO imports (name, format, file_sha256, rows_read, inserted, dataset_id)
    SELECT 'psql', 'prompt-completion', sha256(''), count(*), 0, (SELECT id FROM datasets WHERE name = 'psql') FROM staged;
INSERT INTO prompts (text, sha256, norm_sha256, split, source)
    SELECT DISTINCT ON (prompt_sha) prompt, prompt_sha, prompt_sha,
           CASE WHEN get_byte(prompt_sha, 0) < 13 THEN 'heldout' ELSE 'train' END, 'psql'
    FROM staged ORDER BY prompt_sha, line
    ON CONFLICT (sha256) DO NOTHING;
INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars, source)
    SELECT DISTINCT ON (p.id, s.completion_sha) p.id, s.completion, s.completion_sha, s.completion_sha,
           char_length(s.completion), 'demonstration'
    FROM staged s JOIN prompts p ON p.sha256 = s.prompt_sha
    ORDER BY p.id, s.completion_sha
    ON CONFLICT (prompt_id, sha256) DO NOTHING;
INSERT INTO dataset_rows (dataset_id, kind, prompt_id, response_id, content_sha256, import_line)
    SELECT (SELECT id FROM datasets WHERE name = 'psql'), 'demonstration', p.id, r.id, s.content_sha, s.line
    FROM (SELECT DISTINCT ON (content_sha) * FROM staged ORDER BY content_sha, line) s
    JOIN prompts p ON p.sha256 = s.prompt_sha
    JOIN responses r ON r.prompt_id = p.id AND r.sha256 = s.completion_sha
    ORDER BY s.line
    ON CONFLICT (dataset_id, content_sha256) DO NOTHING;
