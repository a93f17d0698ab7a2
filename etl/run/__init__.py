"""Running a job: its typed options, the plan (batches), the thin Lithops wrapper and local runtime, and the worker function each call runs."""
