"""What a newcomer meets first: the quick start's run on the bundled examples, the live progress
display on a terminal and plain lines elsewhere, `just` run by its path."""

import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etl.cli import main
from etl.dataset.views import connect
from tools.evaluate.metrics import Norm, score
from tools.evaluate.runner import load_truth, page_texts

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

pytestmark = pytest.mark.slow


def test_the_quick_start_reads_the_example_pages_and_prints_their_text(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["ocr", f"src={EXAMPLES / 'comics'}", f"out={out}", "progress=false"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "5 in 3 volumes: 5 ok" in printed  # a CBZ, a folder, the manga page's folder
    truth = load_truth(EXAMPLES / "truth.jsonl")
    # The transcripts are keyed as examples/manifest.csv names the pages: found by where each page is.
    from etl.dataset.manifest import load_manifest

    named = dict(zip(*load_manifest(str(EXAMPLES / "manifest.csv")).select("image_uri", "page_id")))
    con = connect(str(out))
    where = dict(con.execute("select page_id, image_uri from pages").fetchall())
    assert sorted(where.values()) == sorted(named)  # the manifest and src= name the same pages alike
    con.close()
    texts = {named[where[pid]]: text for pid, text in page_texts(str(out), "ppocrv6").items()}
    assert set(texts) == set(truth)
    scores = {pid: score(ref, texts[pid] or "", Norm()) for pid, ref in truth.items()}
    english = [s for s in scores.values() if s["unit"] == "word"]
    japanese = [s for s in scores.values() if s["unit"] == "char"]
    assert len(english) == 4 and len(japanese) == 1
    assert sum(s["matched"] for s in english) / sum(s["units"] for s in english) >= 0.9, scores
    assert japanese[0]["recall"] >= 0.9, scores
    # The page text is in the run's own output, not only in the dataset.
    assert "Potion of Flight" in printed and "Many thanks to" in printed
    assert truth["manga-generated-01"].splitlines()[0] in printed
    # lang=auto (the default) read the manga page as vertical Japanese and the rest as English.
    con = connect(str(out))
    vertical = dict(con.execute("select page_id, bool_and(vertical) from elements where level = 'line' "
                                "group by page_id").fetchall())
    con.close()
    assert vertical.pop("generated-manga/01") is True and not any(vertical.values()), vertical


def _run_on_terminal(cmd: list[str], env: dict, timeout: float = 300) -> tuple[int, str]:
    """Run `cmd` with stdout and stderr on a pseudo-terminal; its exit status and all it wrote.

    Read until the command exits, then what is left: not until the terminal's end of file, which
    waits on every process that inherited it (Lithops' cleaner outlives the command by seconds)."""
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, close_fds=True)
    os.close(slave)
    chunks, deadline, exited = [], time.monotonic() + timeout, False
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif exited:
            break  # the command is gone and nothing more came
        elif proc.poll() is not None:
            exited = True  # one more pass: read what it wrote last
        elif time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no end after %s s: %s" % (timeout, b"".join(chunks)[-2000:]))
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_a_live_progress_display_and_a_pipe_gets_plain_lines(comic_pages, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM", "COLUMNS")}
    env.update(TERM="xterm-256color", COLUMNS="140")
    cmd = [sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}",
           "batch=2", "lang=eng", "layout=page", "show=0"]  # plain Tesseract: the display is under test, not OCR
    code, shown = _run_on_terminal(cmd + [f"out={tmp_path / 'tty'}"], env)
    assert code == 0, shown
    # rich redraws one line in place: a bar, pages done of total, the rate and the time left.
    assert "\x1b[" in shown and "━" in shown and "6/6" in shown, shown
    assert "pages/s" in shown and "left" in shown and "ok 6 failed 0" in shown, shown
    assert "batch " not in shown  # no per-batch lines under the bar

    piped = subprocess.run(cmd + [f"out={tmp_path / 'pipe'}"], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert piped.returncode == 0, piped.stderr
    logged = piped.stdout + piped.stderr
    assert "\x1b[" not in logged and "━" not in logged and "\r" not in logged, logged
    lines = [line for line in piped.stderr.splitlines() if line.startswith("batch ")]
    assert len(lines) == 3 and "6/6 done" in lines[-1] and "pages/s" in lines[-1], piped.stderr

    # progress=false on a terminal: the plain lines, for logs captured through a terminal.
    code, quiet = _run_on_terminal(cmd + [f"out={tmp_path / 'quiet'}", "progress=false"], env)
    assert code == 0 and "━" not in quiet and quiet.count("batch ") == 3, quiet


def test_every_recipe_works_when_just_is_run_by_its_path(tmp_path):
    just = Path(sys.executable).parent / "just"
    if not just.exists():
        just = Path(shutil.which("just") or "just")
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = "/usr/bin:/bin"  # not the venv: `just` is found only by the path it was started by
    listed = subprocess.run([str(just)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "ocr *args" in listed.stdout and "query *args" in listed.stdout
    usage = subprocess.run([str(just), "estimate", "pages=1000", "backend=aws_lambda"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "1,000 pages" in usage.stdout, usage.stdout + usage.stderr
