-- Pages whose latest attempt failed, grouped by reason: what a rerun will retry.
SELECT engine, config_hash, error_kind, count(*) AS pages, any_value(error) AS example
FROM pages
WHERE status = 'error'
GROUP BY engine, config_hash, error_kind
ORDER BY pages DESC;
