"""Using a dataset: ranked search, exports for readers and archives, page embeddings."""
