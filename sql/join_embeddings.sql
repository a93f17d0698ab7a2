-- The nearest pages by embedding, joined to their text on page_id.
-- `embeddings` is OUT/embeddings/**/*.parquet: (page_id, engine, config_hash, model, vector), filled by
-- `just embed out=OUT` (hashed character trigrams, offline) or by any model whose vectors you write there.
-- For each page, its three nearest pages of the same engine and model, with the cosine similarity.
WITH e AS (
    SELECT page_id, engine, config_hash, model, vector::FLOAT[] AS v FROM embeddings
),
pairs AS (
    SELECT a.page_id, a.engine, a.model, b.page_id AS neighbour,
           list_cosine_similarity(a.v, b.v) AS similarity,
           row_number() OVER (PARTITION BY a.page_id, a.engine, a.model
                              ORDER BY list_cosine_similarity(a.v, b.v) DESC, b.page_id) AS rank
    FROM e a JOIN e b ON a.engine = b.engine AND a.config_hash = b.config_hash AND a.model = b.model
                     AND a.page_id <> b.page_id
)
SELECT p.page_id, p.engine, p.model, p.rank, p.neighbour, round(p.similarity, 3) AS similarity,
       replace(left(t.text, 40), chr(10), ' ') AS neighbour_text
FROM pairs p
JOIN page_text t ON t.page_id = p.neighbour AND t.engine = p.engine
WHERE p.rank <= 3
ORDER BY p.page_id, p.engine, p.model, p.rank;
