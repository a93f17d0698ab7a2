"""How many pages a call holds: the batch size that makes a run shortest, given its costs."""

from __future__ import annotations

import math


def choose_batch_size(n_pages: int, workers: int, load_s: float, page_s: float, cap: int,
                      call_s: float = 0.2, floor: int = 1) -> int:
    """Pages per call that minimise the run's length, at most `cap`.

    Each call pays the engine's cold start (`load_s`) plus the backend's own cost of a
    call (`call_s`): (n / workers) * (load_s + call_s) / b in all, per worker. Larger
    batches pay it less often but leave a longer tail: when the last batch starts, the
    other workers wait half a batch (b * page_s / 2) on average. The sum is least at
    b = sqrt(2 * n * (load_s + call_s) / (workers * page_s)). `floor` keeps batches at
    least as large as the pages an engine overlaps (API requests in flight).
    """
    if n_pages <= 0:
        return max(1, cap)
    workers = max(1, workers)
    best = math.sqrt(2 * n_pages * (load_s + call_s) / (workers * max(page_s, 1e-3)))
    per_worker = -(-n_pages // workers)  # never fewer batches than workers
    return max(1, min(cap, per_worker, max(floor, round(best))))
