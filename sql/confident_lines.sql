-- Lines read with confidence >= 0.6, and the page text rebuilt from them only.
-- Engines without confidences (NULL) are kept: filter them out with `confidence IS NOT NULL`.
SELECT page_id, engine,
       string_agg(text, '\n' ORDER BY reading_order) AS confident_text,
       count(*) AS n_lines,
       round(avg(confidence), 3) AS mean_confidence
FROM elements
WHERE level = 'line' AND (confidence >= 0.6 OR confidence IS NULL)
GROUP BY page_id, engine
ORDER BY page_id, engine;
