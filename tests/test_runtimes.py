"""Runtimes and cloud configuration: what can be checked without Docker or a cloud account."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from etl.cost.estimate import estimate
from etl.run.executor import load_config

REPO = Path(__file__).resolve().parent.parent
PINS = REPO / "runtimes" / "cpu" / "requirements.txt"


def pins() -> dict[str, str]:
    out = {}
    for line in PINS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[name.lower().replace("_", "-")] = version
    return out


def test_runtime_pins_satisfy_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["tesseract"]
            + project["optional-dependencies"]["s3"]]
    pinned = pins()
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in {PINS.name}"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} breaks {req}"


def test_dockerfiles_use_the_pins_and_the_clients_python():
    major_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    cpu = (REPO / "runtimes/cpu/Dockerfile").read_text()
    gpu = (REPO / "runtimes/gpu/Dockerfile").read_text()
    assert f"FROM python:{major_minor}-" in cpu and f"python{major_minor}" in gpu
    for text in (cpu, gpu):
        assert "runtimes/cpu/requirements.txt" in text and "--no-deps ." in text
        assert "TextDetector()" in text  # weights load at build time, not at run time
        # the neural engines' weights are provisioned and checked into the image
        assert "python -m engines.models dir=/opt/comic-ocr/models" in text and "COMIC_OCR_MODELS=" in text


def lithops_profiles() -> dict[str, dict]:
    text = (REPO / "lithops.yaml").read_text()
    parts = re.split(r"^# --- profile: (\w+) ---\n", text, flags=re.M)
    profiles = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [line[2:] if line.startswith("# ") else line[1:] for line in body.splitlines() if line.startswith("#")]
        profiles[name] = yaml.safe_load("\n".join(lines))
    return profiles


def test_lithops_yaml_default_and_cloud_profiles_load():
    assert yaml.safe_load((REPO / "lithops.yaml").read_text())["lithops"]["backend"] == "localhost"
    profiles = lithops_profiles()
    assert set(profiles) == {"aws_lambda", "aws_batch", "gcp_functions", "azure_functions", "k8s", "localhost_s3"}
    for name, cfg in profiles.items():
        backend = "localhost" if name == "localhost_s3" else name  # run by tests/test_s3.py
        assert cfg["lithops"]["backend"] == backend and cfg["lithops"]["storage"] in cfg
        assert cfg.get(name, {}).get("runtime_memory", 2048) >= 2048  # OCR needs more than Lithops' 256 MB default
    from lithops.config import default_config

    for name in ("aws_lambda", "aws_batch"):  # the SDK of these backends is installed: Lithops validates them
        checked = default_config(config_data=profiles[name], load_storage_config=False)
        assert checked["lithops"]["backend"] == name
    f = REPO / "lithops.yaml"
    assert load_config(str(f), "localhost", 2)["localhost"]["worker_processes"] == 2


def test_estimates_scale_with_pages_and_workers():
    small = estimate(10_000, "tesseract", "aws_lambda", workers=100, batch=16)
    big = estimate(1_000_000, "tesseract", "aws_lambda", workers=1000, batch=16)
    assert big.cost_usd == pytest.approx(small.cost_usd * 100, rel=0.01)
    # Without batch=, the planner's choice: more pages per worker, larger batches (up to the cap).
    assert estimate(2_000, "tesseract", "aws_lambda", workers=100).batch < 16
    assert estimate(1_000_000, "tesseract", "aws_lambda", workers=1000).batch == 16
    assert big.wall_s < estimate(1_000_000, "tesseract", "aws_lambda", workers=100).wall_s
    assert 0.5 < small.cost_usd < 5  # ~2.5 s of a 2 GB function per page
    with pytest.raises(Exception, match="over aws_lambda's limit"):
        estimate(1000, "tesseract", "aws_lambda", batch=500)


def test_runtime_requirements_install_in_a_clean_venv_and_run_a_batch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]  # no .pyc: not under test
    subprocess.run(pip + ["-r", str(PINS)], check=True, timeout=1200)
    src = tmp_path / "src"  # a copy: building in place would leave build/ in the checkout
    src.mkdir()
    # What a runtime image holds: the package without the tooling .dockerignore leaves out.
    left_out = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"tools", "tests"} <= left_out  # the team's tools are outside the package, and out of the image
    for part in ("pyproject.toml", "README.md", "etl", "engines"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, src / part)
    for name in left_out:
        if name.startswith("etl/"):
            (src / name).unlink()
    subprocess.run(pip + ["--no-deps", str(src)], check=True, timeout=600, cwd=tmp_path)
    task = {
        "engine": "tesseract", "options": {"lang": "eng"}, "out": str(tmp_path / "ds"), "run_id": "r1",
        "batch_id": "b1", "config_hash": "h", "extra_columns": [], "page_timeout": 120,
        "pages": [{"page_id": "p0", "image_uri": f"zip://00.webp::{REPO / 'examples/comics/Pepper-and-Carrot/episode-01.cbz'}", "extra": {}}],
    }
    code = ("import dataclasses, json, sys; from etl.run.worker import process_batch; "
            "print(json.dumps(dataclasses.asdict(process_batch(json.loads(sys.argv[1])))))")
    done = subprocess.run([py, "-c", code, json.dumps(task)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pages"][0]["status"] == "ok", result
    assert (tmp_path / "ds/pages/engine=tesseract/part-b1-r1.parquet").is_file()
    # A plain (non-editable) install carries the SQL views and costs.yaml: query and estimate work
    # from outside the checkout, and file=sql/NAME.sql finds the bundled file by name.
    cli = [py, "-m", "etl.cli"]
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = subprocess.run(cli + ["query", f"out={tmp_path / 'ds'}", "sql=select page_id, text from page_text"], **run)
    assert text.returncode == 0 and "p0" in text.stdout and "Episode" in text.stdout, text.stdout + text.stderr
    errors = subprocess.run(cli + ["query", f"out={tmp_path / 'ds'}", "file=sql/errors.sql"], **run)
    assert errors.returncode == 0, errors.stderr
    cost = subprocess.run(cli + ["estimate", "pages=1000", "engine=tesseract"], **run)
    assert cost.returncode == 0 and "1,000 pages with tesseract" in cost.stdout, cost.stdout + cost.stderr
