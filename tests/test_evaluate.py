import polars as pl
import pytest

from tools.evaluate.metrics import Norm, normalize, score

from tools.evaluate.__main__ import main


def test_normalisation_and_units():
    assert normalize("Hello,  WORLD!  It's") == "hello world its"
    assert normalize("ＬＩＮＫ！　７") == "link 7"  # NFKC folds full-width forms
    assert normalize("Don’t") == normalize("DON'T") == "dont"  # a typographic apostrophe is one
    assert normalize("Hello!", Norm(fold_case=False, strip_punct=False)) == "Hello!"
    s = score("THE QUICK BROWN FOX", "the quick fox jumps")
    assert s["unit"] == "word" and s["recall"] == pytest.approx(0.75) and s["precision"] == pytest.approx(0.75)
    ja = score("素直にあやまるしか", "素直にあやま")
    assert ja["unit"] == "char" and ja["recall"] == pytest.approx(6 / 9)
    assert score("abc", "")["recall"] == 0 and score("abc", "abc")["cer"] == 0
    # Order does not matter for recall (loose transcripts), it does for CER.
    swapped = score("one two three", "three two one")
    assert swapped["recall"] == 1 and swapped["cer"] > 0


def test_eval_writes_report_chart_and_per_page_scores(comic_pages, tmp_path, capsys):
    out = tmp_path / "ev"
    code = main([f"manifest={comic_pages / 'manifest.csv'}", f"truth={comic_pages / 'truth.jsonl'}",
                 "engine=tesseract,tesseract:layout=page", f"out={out}", "limit=2"])
    assert code == 0
    report = (out / "REPORT.md").read_text()
    assert "| `tesseract` |" in report and "| `tesseract:layout=page` |" in report and "Worst pages" in report
    assert (out / "recall.png").stat().st_size > 5000
    rows = (out / "pages.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2
    ours = [line for line in report.splitlines() if line.startswith("| comics") and "| `tesseract` |" in line][0]
    assert float(ours.split("|")[5]) >= 0.9  # recall column

    # Scoring an existing dataset without rerunning anything.
    code = main([f"out={out / 'data' / 'comics'}", f"truth={comic_pages / 'truth.jsonl'}", "engine=tesseract",
                 f"report={tmp_path / 'r2'}"])
    assert code == 0 and (tmp_path / "r2" / "REPORT.md").is_file()


def test_precision_against_all_visible_text_counts_signs_and_sound_effects_read_right(tmp_path):
    from tools.evaluate.runner import load_truth, score_pages
    from tools.evaluate.reports import summarize

    truth = tmp_path / "truth.jsonl"
    truth.write_text('{"page_id": "p1", "text": "where is the shop", "sfx": ["BOOM"], "other_text": ["OPEN 24H"]}\n')
    text, visible = load_truth(truth), load_truth(truth, visible=True)
    assert text == {"p1": "where is the shop"}
    per_page = score_pages(text, {"p1": "where is the shop OPEN 24H BOOM cat"}, Norm(), visible)
    row = per_page.row(0, named=True)
    assert row["recall"] == 1 and row["precision"] == pytest.approx(4 / 8)  # the sign and the sound "false"
    assert row["precision_visible"] == pytest.approx(7 / 8)  # only "cat" is not on the page
    s = summarize(per_page.with_columns(set=pl.lit("s"), engine=pl.lit("e"), s_per_page=pl.lit(1.0))).row(0, named=True)
    assert s["precision_micro"] == pytest.approx(0.5) and s["precision_visible"] == pytest.approx(7 / 8)


def test_the_stand_in_answers_a_crop_with_the_transcript_text_it_holds():
    from tools.evaluate.runner import crop_truth
    from tools.evaluate.metrics import normalize

    bubble = ["so hold my control key to reach", "and then"]
    assert crop_truth("houd my", bubble) == "hold my"  # a line of a bubble: its span, in whole words
    assert crop_truth("ばかな事", ["ば", "そんなばかな事があるか"]) == "ばかな事"  # not a shorter line inside it
    # spaces are not characters in Japanese (punctuation normalised to them): the span holds all the line
    assert crop_truth("ます", [normalize("お早うございま――す！")]) == "ます"
    # a line that is two pieces of the transcript (two columns read as one line, two lines of a bubble): both
    assert crop_truth("he moped she sighed she cause of her sad", ["he moped she sighed", "the cause of her sadness"]) \
        == "he moped she sighed the cause of her sadness"
    assert crop_truth("baaa baaaa", ["baaa", "baaa", "baaaa"]) == "baaa baaaa"
    # a letter-spaced heading, transcribed letter by letter, is one word read
    assert crop_truth("september 1993", ["d a t e l i n e", "s e p t e m b e r 1 9 9 3"]) == "s e p t e m b e r 1 9 9 3"
    assert crop_truth("zzzz", bubble) is None and crop_truth("", bubble) is None


def test_the_cascade_measured_through_the_pipeline_with_the_answer_key_stand_in(comic_pages, tmp_path):
    """`just eval`'s cascade figures for the default engine come from a real cascade run: Tesseract's
    reading (copied apart from another reading in the same dataset), the API stage's crops and pages
    sent over HTTP to a stand-in that answers them from the transcripts."""
    from tools.evaluate.runner import EvalSet, load_truth, oracle_cascade, run, standin_cascade
    from etl.dataset.views import connect

    es = EvalSet("comics", str(comic_pages / "manifest.csv"), str(comic_pages / "truth.jsonl"))
    truth, readings = load_truth(es.truth), []
    run([es], ["tesseract:layout=page", "tesseract"], tmp_path / "ev", Norm(), readings=readings)
    label, out, engine, cfg, _, _ = readings[1]
    # Every line under 1.01 goes: each line crop asked once, each answered, recall never lower.
    lines = standin_cascade(out, label, cfg, es, truth, 1.01, "lines", Norm(), tmp_path / "lines")
    assert lines["lines"].sum() > 20 and lines["routed"].sum() == lines["lines"].sum()
    assert lines["unanswered"].sum() == 0
    copy = connect(str(tmp_path / "lines"))  # this reading alone, not the other one beside it
    assert copy.execute("select distinct config_hash from pages where reread_of is null").fetchall() == [(cfg,)]
    assert (lines["matched_cascade"] >= lines["matched_alone"]).all()
    oracle = oracle_cascade(out, engine, cfg, truth, 1.01, Norm(), lang=es.lang)
    assert lines["matched_cascade"].to_list() == oracle["matched_cascade"].to_list()
    # Every page goes whole: it comes back as its transcript.
    pages = standin_cascade(out, label, cfg, es, truth, 1.01, "pages", Norm(), tmp_path / "pages")
    assert pages["unanswered"].sum() == 0 and pages["matched_cascade"].to_list() == pages["units"].to_list()
    assert pages["routed"].sum() == pages["lines"].sum()
    # A threshold no line is under, and lines that read as words: nothing goes, nothing changes.
    none = standin_cascade(out, label, cfg, es, truth, 0.0, "pages", Norm(), tmp_path / "none")
    assert none["routed"].sum() == 0 and none["matched_cascade"].to_list() == none["matched_alone"].to_list()
    # `just eval limit=2`: the cascade keeps to the pages read, it reads no other.
    some = []
    run([es], ["tesseract"], tmp_path / "ev2", Norm(), limit=2, readings=some)
    label, out, _, cfg, _, _ = some[0]
    two = standin_cascade(out, label, cfg, es, truth, 1.01, "pages", Norm(), tmp_path / "two")
    assert two.height == 2 and two["matched_cascade"].to_list() == two["units"].to_list()
    assert connect(str(tmp_path / "two")).execute("select count(*) from pages where engine = 'tesseract'").fetchall() == [(2,)]
