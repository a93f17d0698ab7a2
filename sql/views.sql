-- Views over a comic-ocr-etl dataset. `raw_pages` and `raw_elements` are all the
-- shards of every run and engine (set up by etl.query.connect).

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
