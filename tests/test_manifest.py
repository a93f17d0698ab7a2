from pathlib import Path

import polars as pl
import pytest

from etl.cli import main
from etl.errors import ManifestError
from etl.dataset.manifest import build_manifest, load_manifest, uri_warnings


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_csv_with_bom_and_extra_columns_keeps_extras_and_resolves_relative_paths(tmp_path):
    m = write(tmp_path / "m.csv", b"\xef\xbb\xbfpage_id,image_uri,series,issue\n007,a.png,X,1\nb,/abs/b.png,Y,2\n")
    df = load_manifest(str(m))
    assert df.columns == ["page_id", "image_uri", "series", "issue"]
    assert df["page_id"].to_list() == ["007", "b"]  # ids stay text
    assert df["image_uri"].to_list() == [f"{tmp_path}/a.png", "/abs/b.png"]
    assert df["issue"].to_list() == ["1", "2"]


def test_parquet_and_jsonl_and_legacy_column_names(tmp_path):
    frame = pl.DataFrame({"canonical_id": ["p1", "p2"], "absolute_image_path": ["s3://b/1.png", "https://h/2.jpg"], "n": [1, 2]})
    frame.write_parquet(tmp_path / "m.parquet")
    frame.write_ndjson(tmp_path / "m.jsonl")
    for name in ("m.parquet", "m.jsonl"):
        df = load_manifest(str(tmp_path / name))
        assert df["page_id"].to_list() == ["p1", "p2"]
        assert df["image_uri"].to_list() == ["s3://b/1.png", "https://h/2.jpg"]
        assert df["n"].to_list() == [1, 2]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("id,image_uri\na,x.png\n", ["no 'page_id' column", "canonical_id", "columns found: id, image_uri"]),
        ("page_id,path\na,x.png\n", ["no 'image_uri' column", "absolute_image_path"]),
        ("page_id,image_uri\n", ["no rows"]),
        ("", ["empty"]),
        ("page_id,image_uri\na,x.png\nb,\nc, \n", ["'image_uri' is null or empty in 2 row(s)", "data rows 2, 3"]),
        ("page_id,image_uri\n,x.png\n", ["'page_id' is null or empty", "data rows 1"]),
        (
            "page_id,image_uri\na,1.png\nb,2.png\na,3.png\nb,4.png\nc,5.png\n",
            ["2 duplicated id(s) over 4 rows", "'a' (rows 1, 3)", "'b' (rows 2, 4)"],
        ),
        ("a.png\nb.png\n", ["no 'page_id' column"]),  # no header
    ],
)
def test_validation_errors_name_file_column_and_rows(tmp_path, content, expected):
    m = write(tmp_path / "bad.csv", content)
    with pytest.raises(ManifestError) as err:
        load_manifest(str(m))
    message = str(err.value)
    assert str(m) in message
    for part in expected:
        assert part in message


def test_unsupported_schemes_are_named_but_not_fatal(tmp_path):
    m = write(tmp_path / "m.csv", "page_id,image_uri\na,ftp://h/x.png\nb,ok.png\nc,gopher://y\n")
    df = load_manifest(str(m))
    message = uri_warnings(df, str(m))
    assert str(m) in message and "'image_uri'" in message
    assert "2 row(s): data rows 1, 3" in message and "ftp://h/x.png" in message
    assert uri_warnings(df.filter(pl.col("page_id") == "b"), str(m)) is None


def test_uri_checks_take_the_quick_path_for_uniform_manifests_and_stay_exact(tmp_path):
    # one scheme throughout (the quick path): supported, or every row named
    m = write(tmp_path / "s3.csv", "page_id,image_uri\na,s3://b/1.png\nb,s3://b/2.png\n")
    df = load_manifest(str(m))
    assert df["image_uri"].to_list() == ["s3://b/1.png", "s3://b/2.png"] and uri_warnings(df, str(m)) is None
    m = write(tmp_path / "ftp.csv", "page_id,image_uri\na,ftp://h/1.png\nb,ftp://h/2.png\n")
    assert "2 row(s): data rows 1, 2" in uri_warnings(load_manifest(str(m)), str(m))
    # mixed: case-insensitive schemes, a relative path resolved, a path with "://" in it named
    m = write(tmp_path / "mixed.csv", "page_id,image_uri\na,S3://b/1.png\nb,s3://b/2.png\nc,rel/3.png\n"
              "d,/data/odd://4.png\n")
    df = load_manifest(str(m))
    assert df["image_uri"].to_list()[2] == f"{tmp_path}/rel/3.png"
    assert "1 row(s): data rows 4" in uri_warnings(df, str(m))


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="unsupported manifest format .xlsx"):
        load_manifest(str(write(tmp_path / "m.xlsx", "x")))
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(str(tmp_path / "nope.csv"))


def test_cli_exits_2_on_a_bad_manifest_before_any_work(tmp_path, capsys):
    m = write(tmp_path / "dup.csv", "page_id,image_uri\na,1.png\na,2.png\n")
    assert main(["ocr", "engine=tesseract", f"manifest={m}", f"out={tmp_path / 'out'}"]) == 2
    assert "duplicated id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_build_manifest_from_a_folder(tmp_path):
    src = tmp_path / "imgs"
    (src / "vol1").mkdir(parents=True)
    for rel in ("vol1/p01.png", "vol1/p02.JPG", "cover.webp", "notes.txt", ".hidden/x.png"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    out = tmp_path / "m.parquet"
    assert main(["manifest", f"src={src}", f"out={out}"]) == 0
    df = load_manifest(str(out))
    assert df["page_id"].to_list() == ["cover", "vol1/p01", "vol1/p02"]
    assert df["image_uri"].to_list() == [str(src / "cover.webp"), str(src / "vol1/p01.png"), str(src / "vol1/p02.JPG")]
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ManifestError, match="no page images"):
        build_manifest(str(tmp_path / "empty_dir"))
