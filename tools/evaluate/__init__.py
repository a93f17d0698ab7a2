"""`just eval`: accuracy against transcripts, engines side by side (`python -m tools.evaluate`)."""
