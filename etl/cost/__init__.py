"""The one cost model: costs.yaml (every timing and price), the batch size that makes a run shortest, and `just estimate`."""
