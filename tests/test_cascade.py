"""Cascades and budgets on the real pipeline: real Tesseract and PP-OCRv6, real Lithops localhost,
real Parquet and DuckDB; the API model is the local stand-in (which answers with the true text)."""

import subprocess
import sys

import pytest

from conftest import recall, truth_of
from etl.run.job import run_ocr
from etl.cascade.run import run_cascade
from etl.errors import ConfigError
from etl.cascade.estimate import estimate_cascade
from etl.dataset.views import connect
from fake_vlm import FakeVLM

pytestmark = pytest.mark.slow
QWEN = "qwen/qwen2.5-vl-72b-instruct"
CROP_USD = (100 * 0.25 + 5 * 0.75) / 1e6  # the stand-in's tokens for one line, at costs.yaml's price


@pytest.fixture
def fake(comic_pages, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-CASCADETEST-0123456789")
    with FakeVLM.of_folder(comic_pages) as server:
        yield server


def test_the_cascade_sends_only_doubtful_lines_and_best_text_takes_their_new_reading(comic_pages, fake, tmp_path):
    out = tmp_path / "ds"
    when = "confidence < 0.95"
    cmd = [sys.executable, "-m", "etl.cli", "ocr", f"manifest={comic_pages / 'manifest.csv'}", f"out={out}",
           "cascade=tesseract,qwen", f"when={when}", f"qwen.base_url={fake.base_url}", "progress=false", "show=0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stage 2/2" in done.stderr and "lines of tesseract:" in done.stdout
    con = connect(str(out))
    lines = con.sql("select page_id, reading_order, text, confidence from elements "
                    "where engine = 'tesseract' and level = 'line'").pl()
    doubtful = lines.filter(lines["confidence"] < 0.95)
    assert 0 < doubtful.height < lines.height  # the test means something only if both kinds exist
    # One small request per doubtful line, none for the rest, none for whole pages; said before they went,
    # priced at the tokens a line is assumed to cost (none had been sent yet).
    assert len(fake.requests) == doubtful.height and all(r["crop"] for r in fake.requests)
    assert (f"stage 2/2: qwen will send 0 pages whole and {doubtful.height} lines, "
            f"about ${doubtful.height * (150 * 0.25 + 15 * 0.75) / 1e6:,.4f} (150+15 tokens a line (assumed)") in done.stderr
    best = con.sql("select * from best_text order by page_id").pl()
    assert best.height == 6 and set(best["status"]) == {"ok"} and set(best["engine"]) == {"tesseract"}
    reread = con.sql("select page_id, count(*) n from best_lines where reread group by 1").pl()
    assert dict(reread.iter_rows()) == dict(doubtful.group_by("page_id").len().iter_rows())
    for r in best.iter_rows(named=True):
        assert r["engines"] == (["qwen", "tesseract"] if r["lines_reread"] else ["tesseract"])
    # The stand-in reads crops right: the best text reads at least what Tesseract alone did, and
    # more in all, while page_text and elements keep each engine's own reading.
    truth = truth_of(comic_pages)
    cheap = dict(con.execute("select page_id, text from page_text where engine = 'tesseract'").fetchall())
    better = dict(best.select("page_id", "text").iter_rows())
    gains = [recall(truth[p], better[p]) - recall(truth[p], cheap[p]) for p in truth]
    assert min(gains) >= -0.02 and sum(gains) > 0, gains
    assert con.execute("select count(*) from elements where engine = 'qwen'").fetchall()[0][0] == doubtful.height
    # Resume: a rerun sends nothing again.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(fake.requests) == doubtful.height, again.stdout + again.stderr
    assert "qwen will send 0 pages whole and 0 lines" in again.stderr
    # The estimate of the same cascade on 6,000 such pages: this dataset's share of routed lines,
    # at the tokens a line cost here.
    e = estimate_cascade(6000, ["tesseract", "qwen"], when, str(out))
    assert e.stages[0]["lines"] == pytest.approx(1000 * doubtful.height)
    assert e.stages[0]["usd"] == pytest.approx(1000 * doubtful.height * CROP_USD)
    assert e.cost_usd == pytest.approx(e.first.cost_usd + e.stages[0]["usd"])


def test_a_budget_is_never_overspent_and_a_rerun_with_more_reads_the_pending_pages(comic_pages, fake, tmp_path):
    out = str(tmp_path / "ds")
    manifest = str(comic_pages / "manifest.csv")
    # Each page's lines are reserved at the most they can be billed (several times what the stand-in bills):
    # room for two or three pages, not for all six.
    budget = 300 * CROP_USD
    s = run_cascade(["tesseract", "qwen"], manifest, out, when="true", max_cost_usd=budget, base_url=fake.base_url,
                    batch=2)
    first, stage = s.stages
    assert first.ok == 6 and stage.failed == 0 and stage.pending > 0 and stage.ok > 0
    assert stage.ok + stage.pending == stage.pages_total  # no page lost: read, or pending
    sent = len(fake.requests)
    assert sent * CROP_USD <= budget + 1e-12 and stage.cost_usd <= budget + 1e-12
    con = connect(out)
    rows = con.sql("select status, error_kind, count(*) n, sum(cost_usd) usd from pages where engine = 'qwen' "
                   "group by all").pl()
    by = {r["status"]: r for r in rows.iter_rows(named=True)}
    assert by["pending"]["n"] == stage.pending and by["pending"]["error_kind"] == "budget"
    assert abs(by["ok"]["usd"] - sent * CROP_USD) < 1e-9
    assert con.execute("select count(*) from best_text where status = 'ok'").fetchall()[0][0] == 6
    # A higher budget continues where the first stopped: only the pending pages' lines are sent. Before
    # they go, the plan says how many, at the tokens a line cost in the first run, and the budget left.
    plans = []
    s2 = run_cascade(["tesseract", "qwen"], manifest, out, when="true", max_cost_usd=1.0, base_url=fake.base_url,
                     on_plan=plans.append)
    assert s2.stages[0].skipped == 6 and s2.stages[1].pending == 0 and s2.stages[1].ok == stage.pending
    con = connect(out)
    left = con.execute("select count(*) from pages where engine = 'qwen' and status <> 'ok'").fetchall()[0][0]
    total_lines = con.execute("select count(*) from elements where engine = 'tesseract' and level = 'line'").fetchall()[0][0]
    assert left == 0 and len(fake.requests) == total_lines  # every line sent once, none twice
    [plan] = plans
    assert (plan.stage, plan.engine, plan.pages, plan.lines) == (1, "qwen", 0, total_lines - sent)
    assert plan.cost_usd == pytest.approx((total_lines - sent) * CROP_USD) and "assumed" not in plan.basis
    assert plan.budget_left_usd == pytest.approx(1.0)


def test_a_budget_caps_a_whole_page_api_run_too(comic_pages, fake, tmp_path):
    out = str(tmp_path / "ds")
    s = run_ocr(str(comic_pages / "manifest.csv"), "qwen", out, base_url=fake.base_url, max_side=800,
                max_tokens=400, max_cost_usd=0.003, batch=3)
    assert s.failed == 0 and s.pending > 0 and s.ok > 0 and s.ok + s.pending == 6
    assert s.cost_usd <= 0.003
    s2 = run_ocr(str(comic_pages / "manifest.csv"), "qwen", out, base_url=fake.base_url, max_side=800, max_tokens=400)
    assert s2.ok == s.pending and s2.skipped == s.ok


def test_three_stages_each_read_what_the_one_before_left_doubtful(comic_pages, fake, tmp_path):
    out = str(tmp_path / "ds")
    s = run_cascade(["tesseract", "ppocrv6", "qwen"], str(comic_pages / "manifest.csv"), out,
                    when="confidence < 0.9", base_url=fake.base_url, limit=3)
    assert [st.failed for st in s.stages] == [0, 0, 0] and s.stages[1].lines > 0
    con = connect(out)
    # Stage 3 got exactly the lines that stage 2 read and still doubted (its own confidences).
    still = con.execute("select count(*) from elements e join pages p using (page_id, engine, run_id, batch_id) "
                        "where e.engine = 'ppocrv6' and p.reread_of is not null and e.confidence < 0.9").fetchall()[0][0]
    assert s.stages[2].lines == still == len(fake.requests)
    best = con.sql("select page_id, engines from best_text").pl()
    assert best.height == 3 and all(e[-1] == "tesseract" for e in best["engines"])
    assert any("ppocrv6" in e for e in best["engines"])


def test_bad_cascades_are_refused_before_any_work(comic_pages, tmp_path):
    manifest = str(comic_pages / "manifest.csv")
    for stages, kw, why in [
        (["tesseract"], {}, "two or more"),
        (["tesseract", "tesseract"], {}, "once"),
        (["tesseract", "ppocrv6"], {"max_cost_usd": 1.0}, "price"),
        (["tesseract", "qwen"], {"colour": "red"}, "no engine of the cascade"),
        (["tesseract", "qwen"], {"easyocr.gpu": "true"}, "not a stage"),
    ]:
        with pytest.raises(ConfigError, match=why):
            run_cascade(stages, manifest, str(tmp_path / "ds"), **kw)
    with pytest.raises(ConfigError, match="price"):
        run_ocr(manifest, "tesseract", str(tmp_path / "ds"), max_cost_usd=1.0)
    assert not (tmp_path / "ds").exists()


def test_doubtful_pages_are_read_whole_and_their_new_reading_is_the_best(comic_pages, fake, tmp_path):
    out = str(tmp_path / "ds")
    manifest = str(comic_pages / "manifest.csv")
    first = run_ocr(manifest, "tesseract", out)
    con = connect(out)
    means = con.sql("select page_id, mean_confidence from pages order by mean_confidence").pl()
    m = means["mean_confidence"].to_list()
    assert m[1] < m[2]
    cut = (m[1] + m[2]) / 2  # the two least confident pages go whole
    s = run_cascade(["tesseract", "qwen"], manifest, out, when="confidence < 0.95",
                    pages_when=f"mean_confidence < {cut}", base_url=fake.base_url)
    assert [st.skipped for st in s.stages] == [6, 0, 0]
    whole, lines = s.stages[1], s.stages[2]
    assert (whole.ok, whole.reread_of, lines.reread_of) == (2, None, f"tesseract:{first.config_hash}")
    sent_whole = {r["page"] for r in fake.requests if r["page"]}
    assert sent_whole == set(means["page_id"][:2])
    con = connect(out)
    best = dict(con.execute("select page_id, engine from best_text").fetchall())
    assert {p for p, e in best.items() if e == "qwen"} == sent_whole and len(best) == 6
    # The other pages' doubtful lines, and none of the whole pages', went as crops.
    crops = con.execute("select count(*) from elements e join pages p using (page_id, engine, run_id, batch_id) "
                        "where p.reread_of is not null").fetchall()[0][0]
    doubtful = con.execute("select count(*) from elements where engine = 'tesseract' and level = 'line' "
                           "and confidence < 0.95 and page_id not in (select page_id from pages where engine = 'qwen' "
                           "and reread_of is null)").fetchall()[0][0]
    assert crops == doubtful == sum(1 for r in fake.requests if r.get("crop"))
    truth = truth_of(comic_pages)
    for pid in sent_whole:
        assert recall(truth[pid], con.execute("select text from best_text where page_id = ?", [pid]).fetchall()[0][0]) == 1.0
    # `just estimate` of the same cascade on 600 such pages: a third of them whole, at the tokens a
    # page cost here, and the other pages' doubtful lines at the tokens a line cost.
    page_tokens = con.execute("select avg(prompt_tokens), avg(completion_tokens) from pages where engine = 'qwen' "
                              "and reread_of is null").fetchall()[0]
    line_tokens = con.execute("select sum(prompt_tokens) / sum(lines_reread), sum(completion_tokens) / sum(lines_reread) "
                              "from pages where reread_of is not null").fetchall()[0]
    lines_a_page, share = con.execute(  # on the pages not sent whole
        "select count(*) / count(distinct page_id), avg((confidence < 0.95)::int) from elements "
        f"where engine = 'tesseract' and level = 'line' and page_id not in ({', '.join(repr(p) for p in sent_whole)})"
    ).fetchall()[0]
    e = estimate_cascade(600, ["tesseract", "qwen"], "confidence < 0.95", out, pages_when=f"mean_confidence < {cut}")
    stage = e.stages[0]
    assert stage["pages"] == pytest.approx(200) and stage["lines"] == pytest.approx(400 * lines_a_page * share)
    usd = (200 * (page_tokens[0] * 0.25 + page_tokens[1] * 0.75) + stage["lines"] * (line_tokens[0] * 0.25 + line_tokens[1] * 0.75)) / 1e6
    assert stage["usd"] == pytest.approx(usd) and "reads ~200 pages whole" in e.describe()
    # A plain qwen run over 100 such pages, at the tokens a page cost here.
    from etl.cost.estimate import estimate_api

    assert estimate_api(100, "qwen", out=out).cost_usd == pytest.approx(100 * (page_tokens[0] * 0.25 + page_tokens[1] * 0.75) / 1e6)
    # The manga recipe, every line left alone: whole pages only.
    manga = estimate_cascade(600, ["tesseract", "qwen"], "false", out, pages_when=f"mean_confidence < {cut}")
    assert manga.stages[0]["lines"] == 0 and manga.stages[0]["usd"] == pytest.approx(200 * (page_tokens[0] * 0.25 + page_tokens[1] * 0.75) / 1e6)


def test_the_default_when_routes_a_confident_line_whose_words_are_no_words(tmp_path):
    """Confidence misses what an engine is sure of and wrong about; the default `when` also asks
    `doubtful_text` (etl.dataset.lexicon), so a line of non-words goes on and a plain line stays."""
    import polars as pl
    from PIL import Image, ImageDraw

    from etl.cascade.run import CALIBRATED_THRESHOLD, default_when, doubtful_lines
    from tools.synthetic import _font

    img = Image.new("L", (1500, 420), 255)
    draw = ImageDraw.Draw(img)
    draw.text((60, 60), "HELLO THERE MY FRIEND", font=_font(64), fill=0)
    draw.text((60, 250), "BLORPTANG ZWIXEL", font=_font(64), fill=0)
    img.save(tmp_path / "p.png")
    (tmp_path / "m.csv").write_text("page_id,image_uri\np,p.png\n")
    out = str(tmp_path / "ds")
    first = run_ocr(str(tmp_path / "m.csv"), "tesseract", out)
    con = connect(out)
    lines = dict(con.execute("select text, confidence from elements where level = 'line'").fetchall())
    assert {t.upper() for t in lines} == {"HELLO THERE MY FRIEND", "BLORPTANG ZWIXEL"}, lines
    assert min(lines.values()) >= CALIBRATED_THRESHOLD["tesseract"]  # confidence alone routes neither
    _, routed = doubtful_lines(out, f"tesseract:{first.config_hash}", default_when("tesseract", "eng"),
                               pl.Series(["p"]))
    assert [line["y0"] > 200 for line in routed["p"]] == [True]  # the second line, drawn at y = 250


def test_pages_only_a_cascade_that_sends_doubtful_pages_whole_and_no_line(comic_pages, fake, tmp_path):
    """The manga recipe: `pages_when=...` with `when=false`: whole pages, no crops."""
    out = str(tmp_path / "ds")
    s = run_cascade(["tesseract", "qwen"], str(comic_pages / "manifest.csv"), out, when="false",
                    pages_when="true", base_url=fake.base_url, limit=2)
    assert s.all_ok and [st.ok for st in s.stages[:2]] == [2, 2]
    assert len(fake.requests) == 2 and not any(r.get("crop") for r in fake.requests)
    con = connect(out)
    assert sorted(e for _, e in con.execute("select page_id, engine from best_text").fetchall()) == ["qwen", "qwen"]


def test_a_page_where_the_engine_found_no_line_is_a_doubtful_page(comic_pages, fake, tmp_path):
    """`mean_confidence` of a page read as empty is NULL, and `mean_confidence < t` would pass it over;
    `doubtful_pages_below(t)` (the eval's page route) sends it whole with the pages under t."""
    from PIL import Image

    from etl.cascade.run import doubtful_pages_below

    Image.new("L", (600, 800), 255).save(tmp_path / "blank.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"page_id,image_uri\ncomic,{comic_pages / 'comic-000.png'}\nblank,{tmp_path / 'blank.png'}\n")
    out = str(tmp_path / "ds")
    s = run_cascade(["tesseract", "qwen"], str(manifest), out, when="false", pages_when=doubtful_pages_below(0.05),
                    base_url=fake.base_url)
    assert s.all_ok and s.stages[1].ok == 1
    con = connect(out)
    best = dict(con.execute("select page_id, engine from best_text").fetchall())
    assert best == {"comic": "tesseract", "blank": "qwen"}
    assert con.execute("select mean_confidence from pages where page_id = 'blank' and engine = 'tesseract'").fetchall() == [(None,)]


def test_an_estimate_without_a_sample_says_what_it_assumed_and_reads_constant_conditions():
    from etl.cascade.estimate import DEFAULT_PAGE_SHARE
    from etl.cost.estimate import DEFAULT_PAGE_TOKENS

    manga = estimate_cascade(1000, ["ppocrv6", "qwen"], "false", pages_when="coalesce(mean_confidence, 0) < 0.92")
    stage = manga.stages[0]
    assert stage["pages"] == pytest.approx(1000 * DEFAULT_PAGE_SHARE) and stage["lines"] == 0
    assert stage["usd"] == pytest.approx(200 * (DEFAULT_PAGE_TOKENS[0] * 0.25 + DEFAULT_PAGE_TOKENS[1] * 0.75) / 1e6)
    assert "(assumed)" in manga.describe() and "20% of pages whole" in manga.describe()
    every = estimate_cascade(1000, ["ppocrv6", "qwen"], "1 = 0", pages_when="true")
    assert every.stages[0]["pages"] == 1000 and every.stages[0]["lines"] == 0
    lines = estimate_cascade(1000, ["ppocrv6", "qwen"])  # no pages_when: lines only, a fifth of them
    assert lines.stages[0]["pages"] == 0 and lines.stages[0]["lines"] == pytest.approx(1000 * 15 * 0.2)
    # `just estimate engine=qwen`: an API run is priced by its tokens; a model with no price says so.
    done = subprocess.run([sys.executable, "-m", "etl.cli", "estimate", "pages=1000", "engine=qwen"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"about ${1000 * (2200 * 0.25 + 400 * 0.75) / 1e6:,.4f}" in done.stdout
    done = subprocess.run([sys.executable, "-m", "etl.cli", "estimate", "pages=10", "engine=gemma", "model=my/own-model"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "my/own-model has no price in costs.yaml" in done.stdout


def test_a_cascade_reading_japanese_sends_its_doubtful_pages_whole_by_default(tmp_path, monkeypatch):
    """On manga the gap is text never found (`just eval`): with lang=ja and neither `when` nor
    `pages_when`, the pages under the calibrated threshold, or with no line, go whole and no crop goes."""
    from PIL import Image

    from conftest import write_manga_pages
    from etl.cascade.run import default_routes, default_when, doubtful_pages_below

    assert default_routes("ppocrv6", "ja") == ("false", doubtful_pages_below(0.92))
    assert default_routes("ppocrv6", "en") == (default_when("ppocrv6", "en"), None)
    assert default_routes("ppocrv6", "ja", when="confidence < 0.5") == ("confidence < 0.5", None)  # given: kept
    folder = tmp_path / "manga"
    write_manga_pages(folder, [3])
    blank = Image.new("L", (600, 800), 255)
    blank.save(folder / "blank.png")
    with open(folder / "manifest.csv", "a") as m:
        m.write("blank,blank.png\n")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-CASCADETEST-0123456789")
    with FakeVLM({"blank": (blank, [{"text": "ばかな", "box": [10, 10, 100, 50]}])}) as fake:
        s = run_cascade(["ppocrv6", "qwen"], str(folder / "manifest.csv"), str(tmp_path / "ds"), lang="ja",
                        base_url=fake.base_url)
    assert s.all_ok and s.when == "false" and s.pages_when == doubtful_pages_below(0.92)
    assert len(fake.requests) == 1 and not fake.requests[0].get("crop")
    con = connect(str(tmp_path / "ds"))
    assert dict(con.execute("select page_id, engine from best_text").fetchall()) == {"manga-0": "ppocrv6", "blank": "qwen"}
