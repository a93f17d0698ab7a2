-- Join page text with an embeddings table (page_id, vector) computed downstream.
-- Replace the inline table with your own, e.g.
--   CREATE VIEW embeddings AS SELECT * FROM read_parquet('embeddings/*.parquet');
-- Here a tiny stand-in is derived from the pages so the file runs as is.
CREATE OR REPLACE TEMP VIEW embeddings AS
SELECT page_id, [length(text)::FLOAT, n_elements::FLOAT] AS vector
FROM page_text WHERE engine = 'tesseract';

SELECT t.page_id, t.engine, left(t.text, 60) AS text_start, e.vector
FROM page_text t
JOIN embeddings e USING (page_id)
ORDER BY t.page_id;
