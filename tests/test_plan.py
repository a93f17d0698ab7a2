import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engines import get_engine
from etl.dataset import layout as dataset, storage
from etl.cost.prices import costs, engine_seconds
from etl.run import plan
from etl.dataset.tasks import PageTask
from etl.run.executor import load_config


def manifest(n: int) -> pl.DataFrame:
    return pl.DataFrame({"page_id": [f"p{i:04d}" for i in range(n)], "image_uri": [f"/x/{i}.png" for i in range(n)],
                         "series": ["S"] * n})


def test_batches_are_deterministic_ordered_and_content_addressed():
    df = manifest(10)
    a = plan.make_batches(df, 4, "tesseract", "h1")
    b = plan.make_batches(df, 4, "tesseract", "h1")
    assert [x.batch_id for x in a] == [x.batch_id for x in b]
    assert [[p.page_id for p in x.pages()] for x in a] == [
        ["p0000", "p0001", "p0002", "p0003"], ["p0004", "p0005", "p0006", "p0007"], ["p0008", "p0009"]]
    assert a[0].pages()[0] == PageTask(page_id="p0000", image_uri="/x/0.png", extra={"series": "S"})
    assert len({x.batch_id for x in a}) == 3
    # Other options or other pages: other ids (a different shard).
    assert plan.make_batches(df, 4, "tesseract", "h2")[0].batch_id != a[0].batch_id
    assert plan.make_batches(df.tail(9), 4, "tesseract", "h1")[0].batch_id != a[0].batch_id


def test_batch_size_weighs_cold_start_against_the_tail():
    regions = (1.3, 2.8)  # Tesseract with its detector: load s, s per page
    assert plan.choose_batch_size(4, 2, *regions, 16) == 1  # small runs spread over the workers
    assert plan.choose_batch_size(12, 2, *regions, 16) == 3
    assert plan.choose_batch_size(1000, 2, *regions, 16) == 16  # the engine's memory cap
    assert plan.choose_batch_size(1, 8, *regions, 16) == 1
    assert plan.choose_batch_size(0, 2, *regions, 16) == 16
    # no model to load: small batches keep the tail short
    assert plan.choose_batch_size(64, 2, 0.05, 1.5, 16) == 3
    # a costly call (cloud) makes batches larger
    assert plan.choose_batch_size(10_000, 100, *regions, 64, call_s=1.0) == 13
    # API engines: at least as many pages as requests in flight
    assert plan.choose_batch_size(16, 2, 0.3, 1.25, 32, floor=4) == 4


def test_a_localhost_run_plans_smaller_batches_since_its_runner_preloads_the_engine():
    cls = get_engine("tesseract")
    regions = cls.parse_options({})
    # a fresh process pays the imports; a forked localhost call does not (figures: costs.yaml, their one home)
    fresh, forked = engine_seconds(cls, regions)[0], engine_seconds(cls, regions, preloaded=True)[0]
    assert forked == max(0.05, fresh - costs()["engines"]["tesseract"]["import_s"]) and forked < fresh
    # so its batches are smaller (the figures are measured, rewritten by `just bench`: no sizes pinned here)
    local, cloud = (plan.planned_batch_size(cls, regions, 64, 2, be) for be in ("localhost", "aws_lambda"))
    assert 1 <= local < cloud <= cls.max_batch_size
    vlm = get_engine("qwen")
    assert plan.planned_batch_size(vlm, vlm.parse_options({"concurrency": "6"}), 64, 2, "localhost") == 6


def test_config_hash_follows_options():
    cls = get_engine("tesseract")
    h = plan.config_hash("tesseract", cls.parse_options({"lang": "en"}))
    assert h == plan.config_hash("tesseract", cls.parse_options({"lang": "eng"}))
    assert h != plan.config_hash("tesseract", cls.parse_options({"lang": "eng", "layout": "page"}))


def test_renamed_options_keep_their_old_meaning_and_hash(caplog):
    # `reading` (every engine) replaced tesseract's and the VLMs' `rtl` flag, and paddleocr's longest
    # side became `det_max_side` (det_side is the shorter side elsewhere). A dataset made before
    # must resume without reading its pages again: these hashes were computed before the rename.
    def h(engine, **options):
        cls = get_engine(engine)
        return plan.config_hash(engine, cls.parse_options(options))

    assert h("tesseract") == "723a9bc8291bd47a"
    assert h("tesseract", lang="jpn") == h("tesseract", lang="jpn", reading="auto") == "b05fb9c7b0246e02"
    assert h("tesseract", reading="rtl") == h("tesseract", rtl="true") == "afb2c4f79d617215"
    assert h("paddleocr") == "d6963802eb5ff35d"
    assert h("paddleocr", det_max_side="1280", lang="ja") == h("paddleocr", det_side="1280", lang="ja") == "0918be556318a6cf"
    assert "det_side= is now det_max_side=1280" in caplog.text
    assert get_engine("tesseract").parse_options({"lang": "jpn", "reading": "ltr"}).rtl is False  # new: manga read ltr
    assert get_engine("qwen").parse_options({"rtl": "true"}).rtl is True
    assert h("tesseract", lang="jpn", reading="ltr") != h("tesseract", lang="jpn")


def test_resume_skips_only_successful_pages_of_the_same_config(tmp_path):
    out = str(tmp_path)
    shard = storage.join(out, "pages", "engine=tesseract", "part-a.parquet")
    os.makedirs(os.path.dirname(shard))
    pq.write_table(pa.table({"page_id": ["p0000", "p0001", "p0002"], "status": ["ok", "error", "ok"],
                             "config_hash": ["h1", "h1", "h2"]}), shard)
    done = dataset.done_page_ids(out, "tesseract", "h1")
    assert done.to_list() == ["p0000"]
    todo = plan.pending(manifest(4), done)
    assert todo["page_id"].to_list() == ["p0001", "p0002", "p0003"]
    assert dataset.done_page_ids(out, "easyocr", "h1").is_empty()


def test_atomic_write_leaves_only_the_final_file(tmp_path):
    target = str(tmp_path / "t" / "part-x.parquet")
    storage.write_parquet_atomic(pa.table({"a": [1]}), target)
    storage.write_parquet_atomic(pa.table({"a": [2]}), target)  # replaced whole
    assert os.listdir(tmp_path / "t") == ["part-x.parquet"]
    assert pq.read_table(target)["a"].to_pylist() == [2]


def test_lithops_config_defaults_and_overrides(tmp_path):
    cfg = load_config(None, None, 3)
    assert cfg["lithops"]["backend"] == "localhost" and cfg["localhost"]["worker_processes"] == 3
    # this venv's interpreter, through the entry point that preloads the worker
    assert cfg["localhost"]["version"] == 1
    assert cfg["localhost"]["runtime"] == str(Path(sys.executable).with_name("comic-ocr-local-runtime"))
    f = tmp_path / "l.yaml"
    f.write_text("lithops:\n  backend: aws_lambda\n  storage: aws_s3\naws_lambda:\n  runtime_memory: 2048\n")
    cfg = load_config(str(f), None, 50)
    assert cfg["lithops"]["backend"] == "aws_lambda" and cfg["aws_lambda"]["runtime_memory"] == 2048
    assert cfg["aws_lambda"]["max_workers"] == 50
    import pytest

    from etl.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="object storage"):
        load_config(None, "aws_lambda")


def test_storage_settings_reach_cloud_workers_but_secrets_never_do():
    from etl.run.executor import storage_env

    env = {"AWS_ENDPOINT_URL_S3": "http://minio:9000", "AWS_REGION": "eu-west-1", "FSSPEC_S3_ANON": "true",
           "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok", "FSSPEC_S3_KEY": "AKIA...",
           "FSSPEC_S3_SECRET": "s3cr3t", "HOME": "/root"}
    assert storage_env(env) == {"AWS_ENDPOINT_URL_S3": "http://minio:9000", "AWS_REGION": "eu-west-1",
                                "FSSPEC_S3_ANON": "true"}


def test_deadline_reports_a_timeout_even_when_library_code_swallows_the_alarm():
    import time

    import pytest

    from etl.errors import PageTimeout
    from etl.run.worker import deadline

    def library_call():  # a broad except that turns any error into its own
        try:
            end = time.monotonic() + 5
            while time.monotonic() < end:
                sum(range(1000))
        except Exception as exc:
            raise ValueError("resize failed") from exc

    with pytest.raises(PageTimeout, match="page_timeout=0.05"):
        with deadline(0.05):
            library_call()
    with pytest.raises(KeyError):  # other errors pass through untouched
        with deadline(5):
            raise KeyError("x")


def test_local_runtime_runs_a_script_like_python_with_the_worker_preloaded(tmp_path):
    runtime = load_config(None, None, 1)["localhost"]["runtime"]
    script = tmp_path / "runner.py"
    script.write_text("import json, sys\n"
                      "print(json.dumps([sys.argv, sys.path[0], 'etl.run.worker' in sys.modules, __name__]))\n")
    out = subprocess.run([runtime, str(script), "run_job", "job.json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[str(script), "run_job", "job.json"], str(tmp_path), True, "__main__"]
    # anything that is not a script goes to the interpreter unchanged
    out = subprocess.run([runtime, "-c", "import sys; print('etl.run.worker' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_runner_uses_this_interpreters_lithops_not_the_shared_temp_copy(tmp_path):
    """Each process that starts a Lithops executor replaces the package copy in Lithops' temp folder,
    which the runner puts first on sys.path: a job started meanwhile failed to import and its run
    waited for it forever. Here the runner's folder holds a broken `lithops`: the job still imports."""
    import lithops

    runtime = load_config(None, None, 1)["localhost"]["runtime"]
    (tmp_path / "lithops" / "worker").mkdir(parents=True)
    (tmp_path / "lithops" / "__init__.py").write_text("raise ImportError('half-replaced copy')\n")
    (tmp_path / "lithops" / "worker" / "__init__.py").write_text("raise ImportError('half-replaced copy')\n")
    script = tmp_path / "runner.py"
    script.write_text("import lithops, sys\nfrom lithops.worker import function_handler\n"
                      "from lithops.worker.utils import get_runtime_metadata\nprint(lithops.__file__)\n")
    out = subprocess.run([runtime, str(script), "run_job", "job.json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == lithops.__file__


def test_local_runtime_imports_what_the_jobs_engine_names_before_forking(tmp_path, monkeypatch):
    from etl.run.local_runtime import job_preloads

    job = tmp_path / "job.json"
    job.write_text(json.dumps({"config": {"comic_ocr": {"preload": ["engines.tesseract", "no_such_module"]}}}))
    assert job_preloads(["runner.py", "run_job", str(job)]) == ["engines.tesseract", "no_such_module"]
    assert job_preloads(["runner.py", "get_metadata"]) == []
    job.write_text("{not json")
    assert job_preloads(["runner.py", "run_job", str(job)]) == []  # unreadable: no preload, no failure

    # Through real Lithops localhost: each call is a fresh fork of the runner, and sees what
    # the runner imported. A module that cannot be imported is passed over.
    from engines import get_engine
    from etl.run.executor import LithopsExecutor

    cls = get_engine("tesseract")
    assert cls.preload_modules(cls.parse_options({"layout": "page"})) == ("engines.tesseract",)
    assert "rapidocr.main" in cls.preload_modules(cls.parse_options({}))
    (tmp_path / "probe_preload.py").write_text(
        "import sys\n\ndef imported(name):\n    return name in sys.modules\n\n"
        "def versions_cached(_):\n    return sys.modules['engines.tesseract'].tesseract_version.cache_info().currsize\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the runner inherits it and unpickles the probe
    from probe_preload import imported

    for preload, expected in ((("engines.tesseract", "no_such_module"), True), ((), False)):
        # pytesseract comes with engines.tesseract; the worker module alone does not import it
        results = list(LithopsExecutor(load_config(None, None, 1), preload=preload).map(imported, ["pytesseract"]))
        assert [(r, e) for _, r, e in results] == [(expected, None)]
    # The runner also did, once, what every call would repeat (each module's prepare_to_fork):
    # Pillow's TIFF writer and PyArrow's pandas check are loaded, Tesseract's version is known.
    from probe_preload import versions_cached

    results = list(LithopsExecutor(load_config(None, None, 1)).map(imported, ["PIL.TiffImagePlugin", "pandas"]))
    assert [(r, e) for _, r, e in results] == [(True, None), (True, None)]
    results = list(LithopsExecutor(load_config(None, None, 1), preload=("engines.tesseract",)).map(versions_cached, [0]))
    assert [(r, e) for _, r, e in results] == [(1, None)]


def test_costliest_batches_go_first_when_the_images_are_local_files(tmp_path):
    from etl.run.job import TaskList

    sizes = [10, 5000, 300, 5000, 40_000]
    for i, n in enumerate(sizes):
        (tmp_path / f"{i}.png").write_bytes(b"x" * n)

    def tasks(uris):  # one page a batch; a task is named by its page id
        frame = pl.DataFrame({"page_id": [f"b{i}" for i, _ in uris], "image_uri": [u for _, u in uris]})
        return TaskList(plan.make_batches(frame, 1, "tesseract", "h"), lambda b: b.rows["page_id"][0])

    local = [(i, str(tmp_path / f"{i}.png")) for i in range(len(sizes))] + [(9, str(tmp_path / "missing.png"))]
    assert list(plan.costliest_first(tasks(local))) == ["b4", "b1", "b3", "b2", "b0", "b9"]  # missing: fails fast, last
    # file:// URIs are local files too; an object store keeps manifest order (a stat is a request)
    assert plan.costliest_first(tasks([(0, f"file://{tmp_path}/0.png"), (4, f"file://{tmp_path}/4.png")]))[0] == "b4"
    remote = tasks([(0, str(tmp_path / "0.png")), (1, "s3://bucket/1.png")])
    assert list(plan.costliest_first(remote)) == ["b0", "b1"]
