# comic-ocr-etl tasks. Arguments are key=value, e.g.
#   just ocr manifest=examples/manifest.csv out=out lang=eng batch=8 workers=2

set positional-arguments

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# list the recipes
default:
    @just --list

# install system packages (apt, when root) and the Python environment in .venv
setup:
    bash scripts/setup.sh

# OCR a manifest into a dataset: manifest=PATH [engine=tesseract] [out=out] [batch=] [workers=] [lang=] [backend=] [config=] [limit=] [force=true]
ocr *args:
    @{{python}} -m etl.cli ocr "$@"

# SQL over a dataset's views: out=PATH sql="select ..." | file=sql/NAME.sql
query *args:
    @{{python}} -m etl.cli query "$@"

# build a manifest from a folder or s3:// prefix of images: src=FOLDER out=FILE
manifest *args:
    @{{python}} -m etl.cli manifest "$@"

# regenerate the bundled example pages (synthetic, redistributable)
examples:
    @{{python}} -m etl.synthetic examples 4 2026

# the whole test suite
test *args:
    @{{python}} -m pytest "$@"

# measure speed and write BENCHMARKS.md: [pages=N] [workers=W]
bench *args:
    @{{python}} -m etl.bench "$@"
