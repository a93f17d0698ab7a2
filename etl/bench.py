"""`just bench`: speed and memory figures, each against a baseline measured in the same run.

    python -m etl.bench [pages=32] [workers=2] [repeat=3] [plan_rows=1000000]
                        [query_rows=10000000] [engines=paddleocr,easyocr] [engine_pages=8]
                        [reads=24] [out=BENCHMARKS.md]

1. Pipeline overhead: `run_ocr` with plain full-page Tesseract (layout=page) over N
   generated pages on W Lithops localhost workers, against the same Tesseract settings
   run directly (a process pool of W; no manifest, Lithops, Parquet or resume).
2. Comic-aware cost: seconds per page of layout=regions against layout=page, one process.
3. Cold start: pipeline seconds per page at batch=1 against the default batch size,
   for Tesseract and each local neural engine (`engines=`, on `engine_pages` pages);
   each engine's seconds per page and peak worker memory (what costs.yaml uses), and
   its memory over `reads` pages in one process.
4. Planning at scale: load + check + resume-check + batch a manifest of `plan_rows`
   rows against a plain Polars read of the same file; peak memory of each (own process).
5. Querying at scale: the views over `query_rows` element rows in 200 shards against
   the same rows in one Parquet file.
6. Real pages (`real=FOLDER`, e.g. ../shared/eval/real_more; `only=real` for this section
   alone): `ppocrv6` against raw RapidOCR (its own pipeline, PP-OCRv6 defaults, one thread)
   on the same pages, and every local method's seconds per page and peak memory there.
7. Against the Tesseract CLI (`only=cli`, `cli_pages=32,96`; `only=cli_real cli_real=FOLDERS` on real
   pages): `run_ocr` engine=tesseract
   layout=page against `xargs -P W tesseract` on the same clean and scanned-style pages.
8. Search (`only=search`, `search_pages=1000`): `just search` over generated page text against
   a DuckDB ILIKE scan, and the index build.
The machine is small and noisy: each figure is the median of `repeat` rounds, each round running
the measured case and its baseline back to back (etl.bench.paired).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from etl import storage
from etl.synthetic import write_pages


REAL_HEADING = "## Engines on real pages"
SEARCH_HEADING = "## Search"
CLI_HEADING = "## Against the Tesseract CLI"
CLI_REAL_HEADING = "## Against the Tesseract CLI, on real pages"


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
    from etl.api import run_ocr
    from etl.plan import planned_batch_size

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


def bench_pipeline(tmp: Path, n: int, workers: int, repeat: int, k: int) -> tuple[list, dict]:
    """Overhead on `n` pages; per-page and cold-start figures on the first `k` (they are per page)."""
    from engines import get_engine
    from etl.api import run_ocr
    from PIL import Image

    write_pages(tmp / "pages", n, seed=9000, prefix="bench")
    manifest = str(tmp / "pages" / "manifest.csv")
    paths = sorted(str(p) for p in (tmp / "pages").glob("*.png"))
    rows = []

    def direct():
        with ProcessPoolExecutor(workers, initializer=_init_direct) as pool:
            list(pool.map(_direct, paths))

    def pipeline():
        s = run_ocr(manifest, engine="tesseract", out=str(tmp / "ds-page"), layout="page", workers=workers, force=True)
        assert s.ok == n, s

    t_pipe, t_direct, ratio = paired(pipeline, direct, repeat)
    rows.append((f"pipeline overhead: pages/s, layout=page, {n} pages, {workers} workers",
                 f"{n / t_pipe:.2f} pages/s", f"{n / t_direct:.2f} pages/s (direct process pool)",
                 f"{ratio:.2f}", "≥ 0.9"))

    cls = get_engine("tesseract")
    # What a localhost runner preloads once per job, timed in a fresh interpreter; then the
    # load that is left to each call (the detector's ONNX session, Tesseract's version).
    preload = cls.preload_modules(cls.parse_options({}))
    import_regions, _ = in_subprocess("import etl.worker", f"for m in {preload!r}: __import__(m)", repeat)
    for m in preload:
        __import__(m)
    t = time.perf_counter()
    regions = cls(cls.parse_options({"lang": "eng"}))
    load_regions = time.perf_counter() - t
    page = cls(cls.parse_options({"lang": "eng", "layout": "page"}))
    images = [Image.open(p).convert("L") for p in paths[:k]]
    # The first page pays the detector's warm-up (ONNX Runtime's first inference): part of a
    # call's cold start, which the planner weighs against the tail.
    t = time.perf_counter()
    regions.read(images[0])
    first_regions = time.perf_counter() - t
    page.read(images[0])
    t_regions, t_page, ratio = paired(lambda: [regions.read(im) for im in images],
                                      lambda: [page.read(im) for im in images], repeat)
    rows.append((f"seconds per page, one process, {len(images)} pages: layout=regions vs layout=page",
                 f"{t_regions / len(images):.2f} s", f"{t_page / len(images):.2f} s", f"{ratio:.2f}", ""))

    k = min(k, n)
    cold = cold_start(manifest, "tesseract", k, workers, repeat, tmp)
    rows.append(cold.row("tesseract (regions)", k, workers))
    s = cold.summaries[cold.size]
    profile = {"imports a localhost runner preloads (regions), s": round(import_regions, 2),
               "engine load (regions) with its modules imported, s": round(load_regions, 2),
               "first page's extra time (regions: the detector's warm-up), s":
                   round(first_regions - t_regions / len(images), 2),
               "seconds per page in the worker (regions)": round(s.page_seconds / s.processed, 2),
               "peak worker RSS, MB (batch default)": round(s.max_peak_rss_mb or 0),
               "peak worker RSS, MB (batch=1)": round(cold.summaries[1].max_peak_rss_mb or 0)}
    return rows, profile


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
read(paths[0])  # warm-up: ONNX Runtime's and PyTorch's first inference is slower
t = time.perf_counter()
for path in paths:
    read(path)
per_page = (time.perf_counter() - t) / len(paths)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps([load, per_page, hwm]))
"""


def real_pages(folder: Path, per_set: int) -> dict[str, list[str]]:
    """Up to `per_set` images of each evaluation set below `folder`, by language (en, ja)."""
    from etl.evaluate import discover
    from etl.manifest import load_manifest

    by_lang: dict[str, list[str]] = {}
    for es in discover(folder):
        uris = load_manifest(es.manifest)["image_uri"].to_list()[:per_set]
        by_lang.setdefault("ja" if es.lang == "ja" else "en", []).extend(uris)
    return by_lang


def _probe(name: str, paths: list[str], lang: str) -> tuple[float, float, float]:
    out = subprocess.run([sys.executable, "-c", REAL_PROBE, name, ",".join(paths), lang], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_real(folder: Path, engines: list[str], per_set: int, repeat: int) -> list:
    """Seconds per page (one core, model loaded, after a warm-up page) and peak memory of each method
    on real pages; ppocrv6 paired with raw RapidOCR (its own pipeline, default settings) round by round."""
    rows = []
    for lang, paths in real_pages(folder, per_set).items():
        label = f"{len(paths)} real {'manga' if lang == 'ja' else 'comic'} pages ({lang})"
        ours, raw = [], []
        for r in range(repeat):
            pair = [("ppocrv6", ours), ("rapidocr-raw", raw)]
            for name, into in (pair if r % 2 else pair[::-1]):
                into.append(_probe(name, paths, lang))
        med = lambda runs, k: statistics.median(x[k] for x in runs)  # noqa: E731
        ratio = statistics.median(b[1] / a[1] for a, b in zip(ours, raw))
        rows.append((f"ppocrv6 vs raw RapidOCR (PP-OCRv6 defaults, one thread): seconds per page, {label}",
                     f"{med(ours, 1):.2f} s, peak {max(x[2] for x in ours):.0f} MB",
                     f"{med(raw, 1):.2f} s, peak {max(x[2] for x in raw):.0f} MB", f"{ratio:.2f}", "≥ 0.87 (within 1.15x)"))
        for name in engines:
            if name == "ppocrv6" or (name == "easyocr" and lang == "ja"):  # EasyOCR ships English weights only
                continue
            load, per_page, peak = _probe(name, paths, lang)
            rows.append((f"{name}: seconds per page, one core, {label}; load {load:.1f} s",
                         f"{per_page:.2f} s, peak {peak:.0f} MB", f"{med(ours, 1):.2f} s (ppocrv6)",
                         f"{med(ours, 1) / per_page:.2f}", ""))
    return rows


def bench_local_engine(tmp: Path, name: str, n: int, workers: int, repeat: int, reads: int) -> tuple[list, dict]:
    """Cold start amortised (batch=1 vs the planner's batch) through the pipeline, and memory
    over `reads` pages in one process (what a long batch would see)."""
    folder = tmp / f"pages-{name}"
    write_pages(folder, n, seed=9500, prefix=name)
    cold = cold_start(str(folder / "manifest.csv"), name, n, workers, repeat, tmp)
    paths = sorted(str(p) for p in folder.glob("*.png"))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, name, ",".join(paths), str(reads)],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    load, first_page, per_page, rss_first, rss_last = json.loads(out)
    rows = [cold.row(name, n, workers, peaks=True),
            (f"{name}: resident memory in one process, after page 1 vs after {reads + 1} pages", f"{rss_last:.0f} MB",
             f"{rss_first:.0f} MB", f"{rss_first / rss_last:.2f}", "≈ 1: bounded")]
    profile = {f"{name}: engine load, s": round(load, 1),
               f"{name}: first page's extra time (warm-up), s": round(first_page - per_page, 1),
               f"{name}: seconds per page, one core": round(per_page, 2),
               f"{name}: peak worker RSS, MB (batch={cold.size})": round(cold.summaries[cold.size].max_peak_rss_mb or 0)}
    return rows, profile


def bench_routing(tmp: Path, n_rows: int, repeat: int) -> list:
    """Choosing a cascade's lines with the default `when` (confidence, or `doubtful_text`: a Python
    function DuckDB calls per line) against the same choice by confidence alone, over `best_lines`."""
    from spellchecker import SpellChecker

    from etl.cascade import CALIBRATED_THRESHOLD, default_when
    from etl.query import connect

    rng = np.random.default_rng(1)
    words = sorted(w for w in SpellChecker(language="en").word_frequency.dictionary if w.isalpha())
    lines = []
    for i in range(20_000):  # lines of 3-8 words; one in ten with a letter dropped: a misread
        picked = [words[j].upper() for j in rng.integers(0, len(words), int(rng.integers(3, 9)))]
        if i % 10 == 0:
            picked[0] = picked[0][1:] or picked[0]
        lines.append(" ".join(picked))
    root = tmp / "routing"
    n_pages = n_rows // 100
    write_synthetic_dataset([root], n_pages, 100, shards=50, texts=lines)
    con = connect(str(root))
    n_lines = con.sql("select count(*) from best_lines").fetchall()[0][0]
    t = CALIBRATED_THRESHOLD["tesseract"]

    def routed(when: str) -> int:
        return con.sql(f"select count(*) from best_lines where base_engine = 'tesseract' and ({when})").fetchall()[0][0]

    t_when, t_conf, ratio = paired(lambda: routed(default_when("tesseract", "en")), lambda: routed(f"confidence < {t}"),
                                   repeat)
    con.close()
    return [(f"cascade routing: the default `when` (confidence or `doubtful_text`) over {n_lines:,} lines, "
             f"vs `confidence < {t}` alone", f"{t_when:.2f} s ({t_when / n_lines * 1e6:.1f} µs a line)",
             f"{t_conf:.2f} s", f"{ratio:.2f}", "")]


def bench_planning(tmp: Path, n_rows: int, repeat: int) -> list:
    from etl import plan
    from etl.schema import PAGE_SCHEMA

    m = tmp / "big.csv"
    ids = [f"series-{i // 200:05d}/page-{i % 200:03d}" for i in range(n_rows)]
    pl.DataFrame({"page_id": ids, "image_uri": [f"s3://bucket/{i}.png" for i in ids],
                  "series": [i.split("/")[0] for i in ids]}).write_csv(m)
    # An earlier run finished a tenth of the pages: resume must find and skip them.
    from engines import get_engine

    cls = get_engine("tesseract")
    cfg = plan.config_hash("tesseract", cls.parse_options({}))
    done_dir = tmp / "ds" / "pages" / "engine=tesseract"
    done_dir.mkdir(parents=True)
    done = ids[: n_rows // 10]
    for k in range(0, len(done), max(1, len(done) // 20)):
        chunk = done[k : k + max(1, len(done) // 20)]
        cols = {name: pa.nulls(len(chunk), t) for name, t in zip(PAGE_SCHEMA.names, PAGE_SCHEMA.types)}
        cols.update(page_id=pa.array(chunk), status=pa.array(["ok"] * len(chunk)),
                    config_hash=pa.array([cfg] * len(chunk)), engine=pa.array(["tesseract"] * len(chunk)))
        pq.write_table(pa.table(cols, schema=PAGE_SCHEMA), done_dir / f"part-{k}.parquet")
    t_read, mem_read = in_subprocess("import polars as pl", f"pl.read_csv({str(m)!r}, infer_schema=False)", repeat)
    code = (
        f"warnings = []\n"
        f"df = load_manifest({str(m)!r}, warnings)\n"
        f"assert not warnings\n"
        f"todo = plan.pending(df, dataset.done_page_ids({str(tmp / 'ds')!r}, 'tesseract', {cfg!r}))\n"
        f"batches = plan.make_batches(todo, 16, 'tesseract', {cfg!r})\n"
        f"assert todo.height == {n_rows - len(done)} and len(batches) == {-(-(n_rows - len(done)) // 16)}"
    )
    t_plan, mem_plan = in_subprocess("from etl import dataset, plan; from etl.manifest import load_manifest",
                                     code, repeat)
    return [(f"planning {n_rows:,} pages: load + check (ids, URIs) + resume-check ({len(done):,} done) + batch, "
             "vs plain Polars read",
             f"{t_plan:.2f} s, peak {mem_plan:.0f} MB", f"{t_read:.2f} s, peak {mem_read:.0f} MB",
             f"{t_read / t_plan:.2f} ({t_plan / t_read:.1f}x the read)", "≤ 2x the read")]


def write_synthetic_dataset(roots: list[Path], n_pages: int, per_page: int = 100, shards: int = 200,
                            texts: list[str] | None = None) -> None:
    """A dataset of `n_pages` read pages with `per_page` elements each (80% words, 16% lines, 4%
    blocks), written straight as shards under every folder of `roots` and as one file under
    `roots[1]` when given (no OCR: for the query and export benchmarks). Element texts are drawn
    from `texts` (default: 5,000 made-up words)."""
    from etl.schema import ELEMENT_SCHEMA, PAGE_SCHEMA

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


def bench_export(tmp: Path, n_pages: int, repeat: int) -> list:
    """`just export format=jsonl` of a large dataset against DuckDB writing the same elements as
    JSON lines itself (what a user would run instead), each in a fresh process: time and peak."""
    root = tmp / "x-data"
    write_synthetic_dataset([root], n_pages, per_page=30)
    dest, plain = tmp / "x-out", tmp / "x-plain.jsonl"
    t_exp, mem_exp = in_subprocess("from etl.export import export",
                                   f"s = export({str(root)!r}, 'jsonl', {str(dest)!r})\nassert s.pages == {n_pages}", repeat)
    copy = (f"con = connect({str(root)!r})\n"
            f"con.execute(\"copy (select page_id, list(struct_pack(level, text, confidence, x0, y0, x1, y1) "
            f"order by level, reading_order) as elements from elements group by page_id order by page_id) "
            f"to '{plain}' (format json)\")")
    t_copy, mem_copy = in_subprocess("from etl.query import connect", copy, repeat)
    return [(f"export {n_pages:,} pages (30 elements each) as JSON lines: `just export format=jsonl` vs DuckDB `COPY ... (FORMAT JSON)`",
             f"{t_exp:.1f} s, peak {mem_exp:.0f} MB", f"{t_copy:.1f} s, peak {mem_copy:.0f} MB",
             f"{t_copy / t_exp:.2f}", "bounded memory")]


def bench_query(tmp: Path, n_rows: int, repeat: int) -> list:
    from etl.query import connect

    per_page, shards = 100, 200
    n_pages = n_rows // per_page
    sharded, single = tmp / "q-sharded", tmp / "q-single"
    write_synthetic_dataset([sharded, single], n_pages, per_page, shards=shards)
    sql = {
        "page_text": "select count(*), sum(length(text)) from page_text",
        "elements by confidence": "select count(*), avg(confidence) from elements where level = 'line' and confidence >= 0.6",
    }
    rows = []
    for name, q in sql.items():
        def run(root):
            con = connect(str(root))
            con.execute(q).fetchall()
            con.close()
        t_sh, t_one, ratio = paired(lambda: run(sharded), lambda: run(single), repeat)
        rows.append((f"query `{name}` over {n_rows:,} element rows ({n_pages:,} pages): {shards} shards vs one file",
                     f"{t_sh:.2f} s", f"{t_one:.2f} s", f"{ratio:.2f}", ""))
    return rows


def chart(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r[0].split(":")[0][:40] for r in rows]
    ratios = [float(r[3].split()[0]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.2))
    ax.barh(labels[::-1], ratios[::-1], color="#4c72b0")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("baseline time / measured time (1.0 = as fast as the baseline)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def bench_cli(tmp: Path, sizes: list[int], workers: int, repeat: int) -> list:
    """`just ocr engine=tesseract layout=page` against what a user would run instead:
    `ls *.png | xargs -P W -I{} tesseract {} - --psm 3` on the same pages, same workers."""
    from etl.api import run_ocr

    rows = []
    for n in sizes:
        clean = tmp / f"cli-clean-{n}"
        write_pages(clean, n, seed=9500, prefix="cli")
        scanned = tmp / f"cli-scanned-{n}"
        scanned_style(clean, scanned)
        for label, folder in (("clean 1200x1700", clean), ("scanned-style 1600x2400", scanned)):
            def pipeline():
                s = run_ocr(str(folder / "manifest.csv"), engine="tesseract", out=str(tmp / f"cli-ds-{n}"),
                            layout="page", lang="eng", workers=workers, force=True)
                assert s.ok == n, s

            def plain():
                subprocess.run(f"ls {folder}/*.png | xargs -P {workers} -I{{}} tesseract {{}} - --psm 3 -l eng",
                               shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_THREAD_LIMIT": "1"})

            t_pipe, t_plain, ratio = paired(pipeline, plain, repeat)
            rows.append((f"`just ocr engine=tesseract layout=page`, {n} {label} pages, {workers} workers: pages/s",
                         f"{n / t_pipe:.2f} pages/s", f"{n / t_plain:.2f} pages/s (`xargs -P {workers} tesseract`)",
                         f"{ratio:.2f}", "≥ 0.9 at 96 pages, ≥ 0.8 at 32"))
    return rows


def bench_cli_real(tmp: Path, folders: list[Path], workers: int, repeat: int) -> list:
    """`bench_cli` on real pages the bench did not make: every image of the manifests in `folders`
    (e.g. ../shared/eval/real_more/xkcd_eye_en), read as they are."""
    from etl.api import run_ocr
    from etl.manifest import load_manifest

    pages = tmp / "cli-real"
    pages.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in folders:
        for i, uri in enumerate(load_manifest(str(folder / "manifest.csv"))["image_uri"].to_list()):
            link = pages / f"{folder.name}-{i:03d}{Path(uri).suffix.lower()}"
            if not link.exists():
                link.symlink_to(Path(uri).resolve())
            rows.append(link)
    pl.DataFrame({"page_id": [p.stem for p in rows], "image_uri": [str(p) for p in rows]}).write_csv(pages / "manifest.csv")
    listing = pages / "list.txt"
    listing.write_text("\n".join(str(p) for p in rows) + "\n")

    def pipeline():
        s = run_ocr(str(pages / "manifest.csv"), engine="tesseract", out=str(tmp / "cli-real-ds"), layout="page",
                    lang="eng", workers=workers, force=True)
        assert s.ok == len(rows), s

    def plain():
        subprocess.run(f"xargs -P {workers} -I{{}} tesseract {{}} - --psm 3 -l eng < {listing}", shell=True, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_THREAD_LIMIT": "1"})

    t_pipe, t_plain, ratio = paired(pipeline, plain, repeat)
    names = ", ".join(f.name for f in folders)
    return [(f"`just ocr engine=tesseract layout=page`, {len(rows)} real pages ({names}), {workers} workers: pages/s",
             f"{len(rows) / t_pipe:.2f} pages/s", f"{len(rows) / t_plain:.2f} pages/s (`xargs -P {workers} tesseract`)",
             f"{ratio:.2f}", "≥ 0.9 at 96 pages, ≥ 0.8 at 32")]


def bench_search(tmp: Path, n_pages: int, repeat: int) -> list:
    """`just search` over a collection of generated page text (English and Japanese lines, no OCR),
    against what a user would run instead: DuckDB scanning the lines with ILIKE."""
    import random

    from etl.query import connect
    from etl.schema import STATUS_OK, element_table, page_table
    from etl.search import refresh_index, search
    from etl.synthetic import JA_PHRASES, WORDS
    from etl.dataset import shard_uri

    rng = random.Random(0)
    out = str(tmp / f"search-{n_pages}")
    per_batch, lines_per_page = 20, 20
    for b in range(0, n_pages, per_batch):
        pages, elements = [], []
        for i in range(b, min(n_pages, b + per_batch)):
            pid, ja = f"p{i:06d}", i % 4 == 3
            common = {"page_id": pid, "engine": "tesseract", "config_hash": "h", "run_id": "r", "batch_id": f"b{b}"}
            texts = [("".join(rng.sample(JA_PHRASES, 3)) if ja else " ".join(rng.sample(WORDS, 5)).upper())
                     for _ in range(lines_per_page)]
            pages.append({**common, "image_uri": f"{pid}.png", "status": STATUS_OK, "text": "\n".join(texts),
                          "n_elements": len(texts), "processed_at": datetime.now(timezone.utc)})
            elements += [{**common, "level": "line", "text": t, "confidence": 0.9, "x0": 0.0, "y0": 20.0 * k,
                          "x1": 500.0, "y1": 20.0 * k + 18, "reading_order": k} for k, t in enumerate(texts)]
        storage.write_parquet_atomic(element_table(elements), shard_uri(out, "elements", "tesseract", f"b{b}-r"))
        storage.write_parquet_atomic(page_table(pages, []), shard_uri(out, "pages", "tesseract", f"b{b}-r"))
    t0 = time.perf_counter()
    refresh_index(out)
    build_s = time.perf_counter() - t0
    con = connect(out)
    en, ja = con.execute("select (select text from elements where page_id = 'p000777' and reading_order = 5), "
                         "(select text from elements where page_id = 'p000779' and reading_order = 5)").fetchone()
    con.close()
    rows = []
    for label, q, pid in (("English", en, "p000777"), ("Japanese", ja, "p000779")):
        hits = search(out, q, limit=10, refresh=False)
        # The page ranks first, or ties first with pages that hold the same line (the text is random).
        assert hits["text"][0] == q and pid in hits.filter(pl.col("score") == hits["score"][0])["page_id"], (q, hits)

        def scan():
            c = connect(out)
            c.execute("select page_id from elements where level = 'line' and text ilike ? limit 1", [f"%{q}%"]).fetchall()
            c.close()

        t_s, t_scan, ratio = paired(lambda: search(out, q, limit=10), scan, repeat)  # refresh included: a no-op
        rows.append((f"search a {label} line over {n_pages:,} pages ({n_pages * lines_per_page:,} lines), "
                     "index current; baseline: DuckDB ILIKE scan of the lines", f"{t_s:.2f} s", f"{t_scan:.2f} s",
                     f"{ratio:.2f}", "< 1 s"))
    rows.append((f"build the search index of {n_pages:,} pages ({n_pages // per_batch} shards), once", f"{build_s:.2f} s",
                 "", "", ""))
    return rows


def main(argv: list[str]) -> int:
    from etl.cli import parse_kv

    args = parse_kv(argv)
    n, workers, repeat = int(args.get("pages", 32)), int(args.get("workers", 2)), int(args.get("repeat", 3))
    plan_rows, query_rows = int(args.get("plan_rows", 1_000_000)), int(args.get("query_rows", 10_000_000))
    target = Path(args.get("out", "BENCHMARKS.md"))
    tmp = Path(tempfile.mkdtemp(prefix="comic-bench-"))
    k = int(args.get("engine_pages", 8))
    real_engines = [e for e in args.get("real_engines", "ppocrv6,tesseract,paddleocr,easyocr").split(",") if e]
    real_cmd = (f"just bench only=real real={args.get('real')} real_pages={args.get('real_pages', 2)} "
                f"real_engines={','.join(real_engines)} repeat={repeat}")
    real_section = []
    if args.get("real"):
        real_rows = bench_real(Path(args["real"]), real_engines, int(args.get("real_pages", 2)), repeat)
        real_section = [
            REAL_HEADING, "",
            f"Made by `{real_cmd}` on {time.strftime('%Y-%m-%d')}: up to `real_pages` pages of each set in the "
            "folder (hand-transcribed real comic and manga pages), each method in a fresh process, its model loaded "
            "and warmed up on the first page, one thread; peak is the process's resident peak (VmHWM). The first row "
            f"pairs `ppocrv6` with raw RapidOCR, {repeat} rounds, order alternating, median of the rounds' ratios.", "",
            "| figure | measured | baseline (same run) | ratio (baseline time / measured time) | target |",
            "|---|---|---|---|---|",
            *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in real_rows], "",
        ]
    if args.get("only") == "real":  # this section alone, in place; the rest of BENCHMARKS.md stays as it was
        return _write_section(target, REAL_HEADING, real_section)
    cli_sizes = [int(x) for x in args.get("cli_pages", "32,96").split(",") if x]
    cli_section = [
        CLI_HEADING, "",
        f"Made by `just bench only=cli cli_pages={','.join(map(str, cli_sizes))} workers={workers} repeat={repeat}` on "
        f"{time.strftime('%Y-%m-%d')}: the whole pipeline (manifest check, Lithops localhost, Parquet shards) "
        "against the plain Tesseract CLI on the same generated pages, both with one Tesseract thread per worker; "
        "rounds alternate the order, the ratio is the median of the rounds' ratios.", "",
        "| figure | measured | baseline (same run) | ratio (baseline time / measured time) | target |",
        "|---|---|---|---|---|",
    ]
    if args.get("only") == "cli":
        rows_cli = bench_cli(tmp, cli_sizes, workers, repeat)
        return _write_section(target, CLI_HEADING, cli_section + [f"| {a} | {b} | {c} | {d} | {e} |"
                                                                  for a, b, c, d, e in rows_cli] + [""])
    if args.get("only") == "export":  # the export row alone, in place in the main table (added when missing)
        (a, b_, c, d, e), = bench_export(tmp, int(args.get("export_pages", 100_000)), repeat)
        row = f"| {a} (`just bench only=export`, {time.strftime('%Y-%m-%d')}) | {b_} | {c} | {d} | {e} |"
        return _replace_row(target, "| export ", row, add_before="| query `page_text`")
    if args.get("only") == "cli_real":
        folders = [Path(f) for f in args.get("cli_real", "").split(",") if f]
        if not folders:
            raise SystemExit("only=cli_real needs cli_real=FOLDER[,FOLDER] (folders with a manifest.csv of real pages)")
        section = [
            CLI_REAL_HEADING, "",
            f"Made by `just bench only=cli_real cli_real={args['cli_real']} workers={workers} repeat={repeat}` on "
            f"{time.strftime('%Y-%m-%d')}: as above, on real pages the bench did not make, read as they are.", "",
            "| figure | measured | baseline (same run) | ratio (baseline time / measured time) | target |",
            "|---|---|---|---|---|",
            *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in bench_cli_real(tmp, folders, workers, repeat)], "",
        ]
        return _write_section(target, CLI_REAL_HEADING, section)
    search_pages = int(args.get("search_pages", 1000))
    search_section = [
        SEARCH_HEADING, "",
        f"Made by `just bench only=search search_pages={search_pages} repeat={repeat}` on {time.strftime('%Y-%m-%d')}: "
        "generated page text written straight into a dataset (every fourth page Japanese), indexed once, then a "
        "line of one page searched for (the bench asserts that page ranks first, or ties first with pages holding the same line). Medians of the rounds.", "",
        "| figure | measured | baseline (same run) | ratio (baseline time / measured time) | target |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in bench_search(tmp, search_pages, repeat)], "",
    ]
    if args.get("only") == "search":
        return _write_section(target, SEARCH_HEADING, search_section)
    if args.get("only") == "plan":  # the planning row alone, in place in the main table
        (a, b_, c, d, e), = bench_planning(tmp, plan_rows, repeat)
        return _replace_row(target, "| planning ", f"| {a} (`just bench only=plan`, {time.strftime('%Y-%m-%d')}) | "
                                                  f"{b_} | {c} | {d} | {e} |")
    route_rows = int(args.get("route_rows", 1_000_000))
    if args.get("only") == "routing":  # the routing row alone, in place in the main table (added when missing)
        (a, b_, c, d, e), = bench_routing(tmp, route_rows, repeat)
        row = f"| {a} (`just bench only=routing route_rows={route_rows}`, {time.strftime('%Y-%m-%d')}) | {b_} | {c} | {d} | {e} |"
        return _replace_row(target, "| cascade routing", row, add_before="| query `page_text`")
    rows, profile = bench_pipeline(tmp, n, workers, repeat, k)
    for name in [e for e in args.get("engines", "paddleocr,easyocr").split(",") if e]:
        more_rows, more = bench_local_engine(tmp, name, k, workers, repeat,
                                             int(args.get("reads", 24)))
        rows += more_rows
        profile.update(more)
    rows += bench_planning(tmp, plan_rows, repeat)
    rows += bench_routing(tmp, route_rows, repeat)
    rows += bench_query(tmp, query_rows, repeat)
    chart(rows, target.with_name("benchmarks.png"))
    cmd = (f"just bench pages={n} workers={workers} repeat={repeat} plan_rows={plan_rows} route_rows={route_rows} "
           f"query_rows={query_rows} "
           f"engines={args.get('engines', 'paddleocr,easyocr')} engine_pages={args.get('engine_pages', 8)} "
           f"reads={args.get('reads', 24)}")
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{cmd}` on {time.strftime('%Y-%m-%d')}: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Each figure comes from {repeat} rounds; a round runs the measured "
        "case and its baseline back to back (the order alternating), times are medians and the ratio is the median "
        "of the rounds' ratios. The machine is shared and noisy (±30%), so read the ratios. "
        "Chart: `benchmarks.png`.",
        "",
        "| figure | measured | baseline (same run) | ratio (baseline time / measured time) | target |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        "Engine profiles (Tesseract with layout=regions; `costs.yaml` takes its figures from here):",
        "",
        *[f"- {k}: {v}" for k, v in profile.items()],
        "",
        "Reading the figures:",
        "- Pipeline overhead: 1.0 means the pipeline (manifest check, resume check, Lithops start-up and calls,",
        "  Parquet shards) keeps all of the engine's own throughput. The fixed start-up of a localhost job",
        "  (about 1.5 s: executor, job upload, the runner's interpreter and the imports it preloads) weighs more",
        "  on a few pages than on a real run; each further call costs about 0.1 s (a fork, Lithops' status files,",
        "  two shard writes). The other figures are per page and use the first `engine_pages` pages.",
        "- Comic-aware cost: layout=regions runs a text detector before Tesseract; the ratio is its price in speed,",
        "  paid for the recall plain Tesseract lacks on comic art (README, `just eval`).",
        "- Cold start: below 1 means larger batches save time by loading the engine once per call. The planner",
        "  picks the batch size from each engine's load time and seconds per page (etl/plan.py). On localhost a",
        "  call's load leaves out the imports the runner preloads (the profile's first line for Tesseract) but",
        "  keeps the first page's warm-up: the detector's first ONNX inference is most of Tesseract's cold start.",
        "- Memory: every call is a fresh process, so a worker's memory is bounded by one batch; the one-process",
        "  figure shows how much an engine grows over a long batch (EasyOCR and PaddleOCR are known to grow).",
        "- Planning: the manifest is read as text, checked (nulls, duplicates, schemes), resolved, anti-joined",
        "  with the pages already done, and cut into batches; peak memory is the whole process's.",
        "- Cascade routing: `doubtful_text` is a Python function DuckDB calls once a line (word lists held in",
        "  memory); it runs on the client, once a stage, so a million lines cost seconds, not a worker.",
        "- Querying: the views pick one row per page (a window over all page rows) and join elements to it.",
        "",
        *real_section,
        *cli_section, *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in bench_cli(tmp, cli_sizes, workers, repeat)], "",
        *search_section,
    ]
    target.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _replace_row(target: Path, prefix: str, row: str, add_before: str | None = None) -> int:
    """Replace the table row of BENCHMARKS.md that starts with `prefix` (with `add_before`, a row
    missing is added above the row starting so); the rest stays as it was."""
    lines = target.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if not at and add_before:
        before = [i for i, line in enumerate(lines) if line.startswith(add_before)]
        if before:
            lines.insert(before[0], row)
            at = [before[0]]
    if not at:
        raise SystemExit(f"{target} has no row starting {prefix!r}: run the whole `just bench` first")
    lines[at[0]] = row
    target.write_text("\n".join(lines) + "\n")
    print(row)
    return 0


def _write_section(target: Path, heading: str, section: list[str]) -> int:
    """Replace one `## ` section of BENCHMARKS.md in place (or add it); the rest stays as it was."""
    text = target.read_text() if target.is_file() else "# Benchmarks\n"
    if heading in text:
        before, _, after = text.partition(heading)
        rest = after.split("\n## ", 1)
        text = before + "\n".join(section) + ("\n## " + rest[1] if len(rest) > 1 else "\n")
    else:
        text = text.rstrip() + "\n\n" + "\n".join(section) + "\n"
    target.write_text(text)
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
