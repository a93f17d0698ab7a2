import collections
import json
import re
import shutil
from pathlib import Path

import pytest

from etl.synthetic import write_pages

TEST_SEED = 7100  # far from the examples' seed: pages this project has never tuned on


def words(text: str) -> list[str]:
    return [w for w in re.sub(r"[^A-Z0-9' ]", " ", (text or "").upper()).split() if w]


def recall(truth: str, got: str) -> float:
    t, g = collections.Counter(words(truth)), collections.Counter(words(got))
    return sum((t & g).values()) / max(1, sum(t.values()))


@pytest.fixture(scope="session")
def comic_pages(tmp_path_factory) -> Path:
    """Six generated art-heavy comic pages with transcripts (manifest.csv, truth.jsonl)."""
    folder = tmp_path_factory.mktemp("comics")
    write_pages(folder, 6, seed=TEST_SEED, prefix="comic")
    return folder


@pytest.fixture
def pages_copy(comic_pages, tmp_path) -> Path:
    """A private copy of the pages that a test may damage."""
    dst = tmp_path / "pages"
    shutil.copytree(comic_pages, dst)
    return dst


def truth_of(folder: Path) -> dict[str, str]:
    return {r["page_id"]: r["text"] for r in map(json.loads, (folder / "truth.jsonl").read_text().splitlines())}
