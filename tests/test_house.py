"""The house rules: folders layered and free of import cycles, the team's tools out of the wheel,
each figure in one home."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("etl", "engines", "tools")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_each_folder_imports_only_the_folders_below_it():
    """import-linter's contracts in pyproject.toml: the layers, and no cycle between siblings."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_imports_itself_through_others():
    """No import cycle at all, imports inside functions included (they once hid two)."""
    sys.path.insert(0, str(REPO))
    try:
        graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(REPO))
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = _strongly_connected(edges)
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_check_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_the_wheel_holds_the_pipeline_and_not_the_teams_tools(tmp_path):
    src = tmp_path / "src"  # a copy: a build in place would leave build/ and egg-info in the checkout
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "costs.yaml", "sql", "etl", "engines", "tools", "tests"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(
            REPO / part, src / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / part).is_dir() else {}))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel, = (tmp_path / "dist").glob("comic_ocr_etl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"etl", "engines"}, tops
    for module in ("bench", "evaluate", "synthetic", "standin"):
        assert not any(re.search(rf"(^|/){module}(/|\.py$)", n) for n in names), module
    for needed in ("etl/run/worker.py", "etl/run/local_runtime.py", "etl/dataset/views.py", "etl/cli.py",
                   "etl/_data/costs.yaml", "etl/_data/sql/views.sql", "engines/lang.py"):
        assert needed in names, needed


def test_each_figure_and_character_range_has_one_home():
    """Timings live in costs.yaml alone, CJK ranges in engines/lang.py alone."""
    code = {p: p.read_text() for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    ranges = re.compile(r"\\u(3040|3041|30a0|30ff|3400|4e00|9fff|ff66|ac00)", re.I)
    assert [str(p.relative_to(REPO)) for p, text in code.items() if ranges.search(text)] == ["engines/lang.py"]
    timing = re.compile(r"\b(load_seconds|page_seconds|IMPORT_SECONDS|cpu_s_per_page|call_overhead_s|load_s)\s*[:=]\s*[\d.({]")
    assert [str(p.relative_to(REPO)) for p, text in code.items() if timing.search(text)] == []


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE_CMD = re.compile(r"(?:^|&&\s*|;\s*)(?:\.venv/bin/)?just\s+([^#\n]*)")
_INLINE_CMD = re.compile(r"`(?:\.venv/bin/)?just\s+([^`]*)`")


def shown_commands() -> list[tuple[str, str]]:
    """(file, the words after `just`) of every command shown in README.md and docs/."""
    found = []
    for doc in DOCS:
        fenced = False
        for line in doc.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            for m in (_FENCE_CMD.finditer(line.strip()) if fenced else _INLINE_CMD.finditer(line)):
                found.append((doc.name, m.group(1).strip()))
    return found


def _recipe_keys() -> dict[str, set[str] | None]:
    """The keys each recipe takes (None: not checked, e.g. pytest's own arguments)."""
    from engines import available, get_engine
    from engines.models import KEYS as MODEL_KEYS
    from etl.cli import COMMANDS
    from etl.run.options import RunOptions
    from tools.bench.__main__ import KEYS as BENCH_KEYS
    from tools.evaluate.__main__ import KEYS as EVAL_KEYS

    engine_options = set()
    for name in available():
        engine_options |= {f for f in get_engine(name).Options.__dataclass_fields__}
    keys: dict[str, set[str] | None] = {name: set(c.keys) if c.keys is not None else None for name, c in COMMANDS.items()}
    keys["ocr"] = RunOptions.keys() | engine_options | {"api_key"}
    keys.update(models=MODEL_KEYS, eval=EVAL_KEYS, bench=BENCH_KEYS, test=None, setup=set(), examples=set())
    return keys


def test_every_command_in_the_readme_and_docs_parses():
    """Each `just ...` shown names a recipe of the Justfile, and each key=value a key it takes."""
    import shlex

    recipes = set(re.findall(r"^([a-z][\w-]*)(?: \*args)?:", (REPO / "Justfile").read_text(), re.M))
    keys = _recipe_keys()
    assert set(keys) - {"setup", "examples", "test"} <= recipes | {"models"}
    commands = shown_commands()
    assert len(commands) > 40, commands
    engines = {"ENGINE", "tesseract", "ppocrv6", "paddleocr", "easyocr", "qwen", "gemma", "deepseek"}
    bad = []
    for doc, words in commands:
        try:
            tokens = shlex.split(words.replace("[", " ").replace("]", " ").replace("(", " ").replace(")", " ")
                                 .replace("|", " "))
        except ValueError as exc:
            bad.append((doc, words, f"unparsable: {exc}"))
            continue
        if not tokens:
            continue
        recipe, args = tokens[0], tokens[1:]
        if recipe not in recipes:
            bad.append((doc, words, f"no recipe {recipe!r}"))
            continue
        allowed = keys.get(recipe)
        if allowed is None:
            continue
        for arg in args:
            key = arg.split("=", 1)[0] if "=" in arg else None
            if key is None or key in allowed:
                continue
            stage, _, option = key.partition(".")
            if recipe == "ocr" and stage in engines and option in keys["ocr"]:
                continue
            bad.append((doc, words, f"{recipe} takes no key {key!r}"))
    assert bad == []


def test_bench_writes_the_engines_figures_into_costs_yaml_and_nothing_else(tmp_path):
    """`just bench only=real` measures each engine on real pages and writes its figures where every
    reader takes them: costs.yaml, in place (comments, prices and other entries as they were)."""
    import yaml

    from tools.bench.report import write_costs

    path = tmp_path / "costs.yaml"
    shutil.copy(REPO / "costs.yaml", path)
    before = yaml.safe_load(path.read_text())
    write_costs(path, {"ppocrv6": [(1.0, 1.2, 900.0), (1.4, 1.6, 1000.0)], "not-priced": [(1.0, 1.0, 1.0)]}, "just bench X")
    write_costs(path, {"ppocrv6": [(1.0, 1.2, 900.0), (1.4, 1.6, 1000.0)]}, "just bench Y")
    after = yaml.safe_load(path.read_text())
    assert after["engines"]["ppocrv6"] == {**before["engines"]["ppocrv6"], "cpu_s_per_page": 1.4, "load_s": 1.2,
                                          "peak_mb": 1150}
    assert {k: v for k, v in after.items() if k != "engines"} == {k: v for k, v in before.items() if k != "engines"}
    assert {k: v for k, v in after["engines"].items() if k != "ppocrv6"} == {
        k: v for k, v in before["engines"].items() if k != "ppocrv6"}
    text = path.read_text()
    assert "just bench Y" in text and "just bench X" not in text  # says which run the figures come from
    assert text.count("# engines: measured on") == 1 and "prices: public list prices" in text


def test_the_readme_starts_people_and_the_docs_hold_the_rest():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "bash scripts/setup.sh && .venv/bin/just ocr src=examples/comics" in readme
    assert ".venv/bin/just test" in readme
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", readme):
        assert (REPO / link).is_file(), link
    for doc in (REPO / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([\w./-]+\.(?:md|png))(?:#[\w-]+)?\)", doc.read_text()):
            assert (doc.parent / link).resolve().is_file(), (doc.name, link)
