-- Views over a comic-ocr-etl dataset. `raw_pages` and `raw_elements` are all the
-- shards of every run and engine (set up by etl.dataset.views.connect).

-- One row per page, engine and options (config_hash): the latest success, else the latest error.
-- Runs with other options (layout=page, then layout=regions) stay apart: neither hides the other.
CREATE OR REPLACE VIEW pages AS
SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY page_id, engine, config_hash
        ORDER BY (status = 'ok') DESC, processed_at DESC, run_id DESC, batch_id DESC
    ) AS _rank
    FROM raw_pages
) WHERE _rank = 1;

-- The elements of the page rows chosen above (words, lines, blocks).
-- Elements of superseded runs, or whose page row was never committed, are left out.
CREATE OR REPLACE VIEW elements AS
SELECT e.*
FROM raw_elements e
JOIN pages p USING (page_id, engine, run_id, batch_id)
WHERE p.status = 'ok';

-- Page text in reading order, one row per successfully read page, engine and options.
CREATE OR REPLACE VIEW page_text AS
SELECT page_id, engine, config_hash, text, n_elements, mean_confidence, image_uri
FROM pages
WHERE status = 'ok';

-- Each page's best reading, line by line: the page's latest full reading (any engine, a reading
-- counting as new as its latest re-read), every line of it replaced by its latest successful re-read
-- (a cascade stage: `just ocr cascade=...`), with the engine that read the line. `line_no` is the
-- line's reading order in the full reading.
CREATE OR REPLACE VIEW best_lines AS
WITH rereads AS (
    SELECT p.reread_of, e.page_id, e.reading_order AS line_no, e.text, e.confidence, e.engine,
           e.config_hash, p.processed_at
    FROM pages p JOIN raw_elements e USING (page_id, engine, run_id, batch_id)
    WHERE p.status = 'ok' AND p.reread_of IS NOT NULL AND e.level = 'line'
    QUALIFY row_number() OVER (PARTITION BY p.reread_of, e.page_id, e.reading_order
                               ORDER BY p.processed_at DESC, p.run_id DESC) = 1
), base AS (
    SELECT b.* FROM pages b
    LEFT JOIN (SELECT reread_of, page_id, max(processed_at) AS at FROM rereads GROUP BY ALL) r
        ON r.page_id = b.page_id AND r.reread_of = b.engine || ':' || b.config_hash
    WHERE b.status = 'ok' AND b.reread_of IS NULL
    QUALIFY row_number() OVER (PARTITION BY b.page_id
                               ORDER BY greatest(b.processed_at, coalesce(r.at, b.processed_at)) DESC,
                                        b.run_id DESC, b.batch_id DESC) = 1
)
SELECT l.page_id, l.reading_order AS line_no,
       coalesce(r.text, l.text) AS text,
       CASE WHEN r.page_id IS NULL THEN l.confidence ELSE r.confidence END AS confidence,
       coalesce(r.engine, l.engine) AS engine, coalesce(r.config_hash, l.config_hash) AS config_hash,
       r.page_id IS NOT NULL AS reread,
       l.text AS base_text, l.confidence AS base_confidence, l.engine AS base_engine,
       l.config_hash AS base_config_hash,
       l.x0, l.y0, l.x1, l.y1, l.polygon, l.block_id, l.vertical
FROM base b
JOIN elements l ON l.page_id = b.page_id AND l.engine = b.engine AND l.run_id = b.run_id
               AND l.batch_id = b.batch_id AND l.level = 'line'
LEFT JOIN rereads r ON r.page_id = l.page_id AND r.line_no = l.reading_order
                   AND r.reread_of = b.engine || ':' || b.config_hash;

-- One reading per page: its best lines in reading order (the full reading's own text where no line
-- was re-read), the engine of the full reading and every engine that read a line of it. Pages with
-- no successful reading have one row too, with the latest attempt's status and error.
CREATE OR REPLACE VIEW best_text AS
WITH lines AS (
    SELECT page_id, base_engine, base_config_hash,
           string_agg(text, chr(10) ORDER BY line_no) FILTER (WHERE trim(text) <> '') AS text,
           count(*) AS n_lines, count(*) FILTER (WHERE reread) AS lines_reread,
           avg(confidence) AS mean_confidence,
           list(DISTINCT engine ORDER BY engine) AS engines
    FROM best_lines GROUP BY ALL
), full_reading AS (  -- pages whose best reading has no line elements (no text found, plain-text answers)
    SELECT * FROM pages WHERE status = 'ok' AND reread_of IS NULL
    QUALIFY row_number() OVER (PARTITION BY page_id ORDER BY processed_at DESC, run_id DESC, batch_id DESC) = 1
), latest_attempt AS (
    SELECT * FROM pages WHERE reread_of IS NULL
    QUALIFY row_number() OVER (PARTITION BY page_id ORDER BY (status = 'ok') DESC, processed_at DESC, run_id DESC) = 1
)
SELECT a.page_id, a.status,
       coalesce(l.base_engine, f.engine) AS engine,
       coalesce(l.base_config_hash, f.config_hash) AS config_hash,
       CASE WHEN l.lines_reread > 0 THEN l.text ELSE coalesce(p.text, f.text) END AS text,
       coalesce(l.engines, CASE WHEN f.engine IS NOT NULL THEN [f.engine] END) AS engines,
       coalesce(l.n_lines, 0) AS n_lines, coalesce(l.lines_reread, 0) AS lines_reread,
       coalesce(l.mean_confidence, f.mean_confidence) AS mean_confidence,
       a.error_kind, a.error, a.image_uri
FROM latest_attempt a
LEFT JOIN lines l USING (page_id)
LEFT JOIN pages p ON p.page_id = l.page_id AND p.engine = l.base_engine AND p.config_hash = l.base_config_hash
LEFT JOIN full_reading f ON f.page_id = a.page_id AND l.page_id IS NULL;
