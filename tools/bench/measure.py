"""How `just bench` measures: paired rounds in alternating order, work in a fresh subprocess
(seconds and peak memory), probes of each engine on real pages, and the pages and datasets it makes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _direct(path: str) -> int:
    import pytesseract
    from PIL import Image

    d = pytesseract.image_to_data(Image.open(path), lang="eng", config="--psm 3", output_type=pytesseract.Output.DICT)
    return sum(1 for w in d["text"] if w.strip())


def _init_direct() -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"


def paired(measured, baseline, repeat: int) -> tuple[float, float, float]:
    """Median seconds of `measured` and of `baseline`, and the median of baseline/measured
    over `repeat` rounds. Each round runs both back to back, the order alternating, so a
    slow spell of this shared machine weighs on both sides of a ratio rather than on one."""
    rounds = []
    for r in range(repeat):
        first, second = (baseline, measured) if r % 2 == 0 else (measured, baseline)
        times = {}
        for fn in (first, second):
            t = time.perf_counter()
            fn()
            times[fn] = time.perf_counter() - t
        rounds.append((times[measured], times[baseline]))
    return (statistics.median(m for m, _ in rounds), statistics.median(b for _, b in rounds),
            statistics.median(b / m for m, b in rounds))


def in_subprocess(setup: str, work: str, repeat: int) -> tuple[float, float]:
    """Median seconds of `work` (after `setup`: imports) and max peak RSS (MB), each run in a
    fresh interpreter. Peak RSS is VmHWM, which starts anew at exec (ru_maxrss would carry the
    parent's peak over)."""
    wrapper = (
        "import time, json\n" + setup + "\nt = time.perf_counter()\n" + work + "\n"
        "elapsed = time.perf_counter() - t\n"
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024\n"
        "print(json.dumps([elapsed, hwm]))"
    )
    runs = [json.loads(subprocess.run([sys.executable, "-c", wrapper], check=True, capture_output=True, text=True)
                       .stdout.strip().splitlines()[-1]) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


@dataclass
class ColdStart:
    """batch=1 against a larger batch through the pipeline: seconds per page, the ratio, the runs."""

    size: int
    why: str
    target: str
    per_page_1: float
    per_page: float
    ratio: float
    summaries: dict

    def peak(self, size: int) -> str:
        return f", peak {self.summaries[size].max_peak_rss_mb or 0:.0f} MB/worker"

    def row(self, name: str, n: int, workers: int, peaks: bool = False) -> tuple:
        return (f"{name}: pipeline seconds per page, batch=1 vs batch={self.size} ({self.why}), {n} pages, "
                f"{workers} workers", f"{self.per_page_1:.2f} s" + (self.peak(1) if peaks else ""),
                f"{self.per_page:.2f} s" + (self.peak(self.size) if peaks else ""), f"{self.ratio:.2f}", self.target)


def cold_start(manifest: str, engine: str, n: int, workers: int, repeat: int, out: Path) -> ColdStart:
    """Pipeline seconds per page at batch=1 against the planner's batch, on the first `n` pages.
    When the planner itself picks 1 (nothing left to amortise), batch=1 is set against one
    batch per worker, to show it."""
    from engines import get_engine
    from etl.run.job import run_ocr
    from etl.run.plan import planned_batch_size

    cls = get_engine(engine)
    size = planned_batch_size(cls, cls.parse_options({}), n, workers, "localhost")
    why, target = "the planner's choice", "< 1: batching pays"
    if size == 1:
        size, why, target = max(2, -(-n // workers)), "one batch per worker; the planner picks 1", "≈ 1: nothing to amortise"
    summaries = {}

    def run(b):
        def go():
            summaries[b] = run_ocr(manifest, engine=engine, out=str(out / f"ds-{engine}-{b}"), workers=workers,
                                   batch=b, force=True, limit=n)
            assert summaries[b].ok == n, summaries[b].examples
        return go

    t_1, t_size, ratio = paired(run(1), run(size), repeat)
    return ColdStart(size, why, target, t_1 / n, t_size / n, ratio, summaries)


MEMORY_PROBE = """
import json, sys, time
from PIL import Image
from engines import get_engine
name, paths, reads = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
def rss():
    return int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS")][0]) / 1024
cls = get_engine(name)
t = time.perf_counter()
engine = cls(cls.parse_options({}))
load = time.perf_counter() - t
images = [Image.open(p).convert("RGB") for p in paths]
t = time.perf_counter()
engine.read(images[0])
first_page = time.perf_counter() - t
first = rss()
t = time.perf_counter()
for i in range(reads):
    engine.read(images[i % len(images)])
per_page = (time.perf_counter() - t) / reads
print(json.dumps([load, first_page, per_page, first, rss()]))
"""


REAL_PROBE = """
import json, sys, time
from PIL import Image
name, paths = sys.argv[1], sys.argv[2].split(",")
t = time.perf_counter()
if name == "rapidocr-raw":  # what a user would run instead: RapidOCR's own pipeline, default settings, one thread
    from rapidocr import RapidOCR
    eng = RapidOCR(params={"Global.log_level": "error", "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                           "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    read = lambda path: eng(path)
else:
    from engines import get_engine
    cls = get_engine(name)
    engine = cls(cls.parse_options({"lang": sys.argv[3]}))
    read = lambda path: engine.read(Image.open(path))
load = time.perf_counter() - t
t = time.perf_counter()
read(paths[0])  # warm-up: ONNX Runtime's and PyTorch's first inference is slower
warm = time.perf_counter() - t
t = time.perf_counter()
for path in paths:
    read(path)
per_page = (time.perf_counter() - t) / len(paths)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps([load, per_page, hwm, warm]))
"""


def real_pages(folder: Path, per_set: int) -> dict[str, list[str]]:
    """Up to `per_set` images of each evaluation set below `folder`, by language (en, ja)."""
    from etl.dataset.manifest import load_manifest
    from tools.evaluate.runner import discover

    by_lang: dict[str, list[str]] = {}
    for es in discover(folder):
        uris = load_manifest(es.manifest)["image_uri"].to_list()[:per_set]
        by_lang.setdefault("ja" if es.lang == "ja" else "en", []).extend(uris)
    return by_lang


def _probe(name: str, paths: list[str], lang: str) -> tuple[float, float, float]:
    out = subprocess.run([sys.executable, "-c", REAL_PROBE, name, ",".join(paths), lang], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    load, per_page, peak, warm = json.loads(out.stdout.strip().splitlines()[-1])
    # A call's cold start: the imports and the model, and what its first page takes beyond a page.
    return load + max(0.0, warm - per_page), per_page, peak


def write_synthetic_dataset(roots: list[Path], n_pages: int, per_page: int = 100, shards: int = 200,
                            texts: list[str] | None = None) -> None:
    """A dataset of `n_pages` read pages with `per_page` elements each (80% words, 16% lines, 4%
    blocks), written straight as shards under every folder of `roots` and as one file under
    `roots[1]` when given (no OCR: for the query and export benchmarks). Element texts are drawn
    from `texts` (default: 5,000 made-up words)."""
    from etl.dataset.schema import ELEMENT_SCHEMA, PAGE_SCHEMA

    rng = np.random.default_rng(0)
    vocab = pa.array(texts or [f"WORD{i}" for i in range(5000)])
    n_texts = len(vocab)
    page_ids = np.array([f"p{i:07d}" for i in range(n_pages)], dtype=object)
    share = np.arange(per_page) * 100 // per_page
    levels = np.where(share < 80, 0, np.where(share < 96, 1, 2)).astype(np.int8)

    def element_rows(lo: int, hi: int) -> pa.Table:
        n = (hi - lo) * per_page
        pid = pa.array(np.repeat(page_ids[lo:hi], per_page))
        level = pa.DictionaryArray.from_arrays(pa.array(np.tile(levels, hi - lo)), pa.array(["word", "line", "block"]))
        cols = {
            "page_id": pid, "engine": pa.array(["tesseract"] * n), "config_hash": pa.array(["h"] * n),
            "run_id": pa.array(["r"] * n), "batch_id": pa.array(np.repeat(page_ids[lo:hi], per_page)),
            "level": level.cast(pa.string()),
            "text": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, n_texts, n).astype(np.int32)), vocab).cast(pa.string()),
            "confidence": pa.array(rng.random(n, dtype=np.float32)),
            "x0": pa.array(rng.random(n, dtype=np.float32) * 1000), "y0": pa.array(rng.random(n, dtype=np.float32) * 1000),
            "x1": pa.array(rng.random(n, dtype=np.float32) * 1000), "y1": pa.array(rng.random(n, dtype=np.float32) * 1000),
            "polygon": pa.nulls(n, ELEMENT_SCHEMA.field("polygon").type),
            "reading_order": pa.array(np.tile(np.arange(per_page, dtype=np.int32), hi - lo)),
            "block_id": pa.array(np.zeros(n, dtype=np.int32)), "line_id": pa.array(np.zeros(n, dtype=np.int32)),
            "vertical": pa.array(np.zeros(n, dtype=bool)),
        }
        return pa.table(cols, schema=ELEMENT_SCHEMA)

    def page_rows(lo: int, hi: int) -> pa.Table:
        n = hi - lo
        cols = {name: pa.nulls(n, t) for name, t in zip(PAGE_SCHEMA.names, PAGE_SCHEMA.types)}
        cols.update(page_id=pa.array(page_ids[lo:hi]), engine=pa.array(["tesseract"] * n), run_id=pa.array(["r"] * n),
                    batch_id=pa.array(page_ids[lo:hi]), status=pa.array(["ok"] * n), config_hash=pa.array(["h"] * n),
                    text=pa.array(["SOME PAGE TEXT " * 20] * n), n_elements=pa.array([per_page] * n, pa.int32()),
                    width=pa.array([1200] * n, pa.int32()), height=pa.array([1700] * n, pa.int32()),
                    processed_at=pa.array([1_700_000_000_000] * n, pa.timestamp("ms", tz="UTC")))
        return pa.table(cols, schema=PAGE_SCHEMA)

    sharded, single = roots[0], roots[1] if len(roots) > 1 else None
    for table, make in (("elements", element_rows), ("pages", page_rows)):
        for d in [sharded] + ([single] if single else []):
            (d / table / "engine=tesseract").mkdir(parents=True)
        step = -(-n_pages // shards)
        whole = (pq.ParquetWriter(single / table / "engine=tesseract" / "part-all.parquet", make(0, 1).schema,
                                  compression="zstd") if single else None)
        for k, lo in enumerate(range(0, n_pages, step)):
            t = make(lo, min(n_pages, lo + step))
            pq.write_table(t, sharded / table / "engine=tesseract" / f"part-{k:04d}.parquet", compression="zstd")
            if whole:
                whole.write_table(t)
        if whole:
            whole.close()


def scanned_style(src: Path, dst: Path) -> None:
    """Generated pages made to look scanned: 1600x2400 RGB, paper tint and sensor noise."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with open(src / "manifest.csv") as m, open(dst / "manifest.csv", "w") as out:
        out.write(next(m))
        for line in m:
            pid, name = line.strip().split(",")
            page = np.asarray(Image.open(src / name).convert("RGB").resize((1600, 2400)), dtype=np.float32)
            page = page * np.array([0.96, 0.93, 0.85]) + rng.normal(0, 9, page.shape)
            Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(dst / name)
            out.write(f"{pid},{name}\n")
