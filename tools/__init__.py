"""The team's own tools, outside the shipped package: benchmarks, evaluation, generated pages, the API stand-in."""
