# comic-ocr-etl tasks. Arguments are key=value, e.g.
#   just ocr src=examples/comics out=out lang=eng batch=8 workers=2

set positional-arguments

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# list the recipes
default:
    @{{just_executable()}} --justfile {{justfile()}} --list

# install system packages (apt, when root) and the Python environment in .venv
setup:
    bash scripts/setup.sh

# OCR pages into a dataset: manifest=PATH [engine=ppocrv6] [out=out] ... | cascade=A,B (`just ocr help`: every option)
ocr *args:
    @{{python}} -m etl.cli ocr "$@"

# every method and its options (type, default, help): [engine=NAME]
engines *args:
    @{{python}} -m etl.cli engines "$@"

# SQL over a dataset's views: out=PATH sql="select ..." | file=sql/NAME.sql
query *args:
    @{{python}} -m etl.cli query "$@"

# ranked full-text search over a dataset's lines (English and Japanese; the index updates itself): out=PATH q="..." [engine=] [limit=10]
search *args:
    @{{python}} -m etl.cli search "$@"

# write a dataset for readers, archives and training: out=PATH format=mokuro|alto|hocr|coco|jsonl dest=FOLDER [engine=] [title=]
export *args:
    @{{python}} -m etl.cli export "$@"

# page vectors (hashed character trigrams, offline) for sql/join_embeddings.sql: out=PATH [engine=]
embed *args:
    @{{python}} -m etl.cli embed "$@"

# build a manifest from a folder or s3:// prefix of images: src=FOLDER out=FILE
manifest *args:
    @{{python}} -m etl.cli manifest "$@"

# expected wall time and dollars of a run: (manifest=PATH | pages=N) [engine=] [backend=aws_lambda] [workers=100] [batch=] [memory=MB] [cascade=A,B [when=] [out=SAMPLE_DATASET]]
estimate *args:
    @{{python}} -m etl.cli estimate "$@"

# build a Lithops runtime image (needs Docker): [backend=aws_lambda] [file=runtimes/cpu/Dockerfile] [name=comic-ocr-cpu:0.1.0] [config=lithops.yaml]
runtime-build *args:
    @{{python}} -m etl.cli runtime-build "$@"

# deploy a built runtime with the memory costs.yaml recommends: [backend=aws_lambda] [name=comic-ocr-cpu:0.1.0] [memory=2048]
runtime-deploy *args:
    @{{python}} -m etl.cli runtime-deploy "$@"

# copy the EasyOCR and PaddleOCR weights into a folder and check their SHA-256 (what a runtime image bakes in): [dir=models] [engines=easyocr,paddleocr] [verify=true]
models *args:
    @{{python}} -m engines.models "$@"

# regenerate the examples' generated manga page (the real pages and their transcripts stay as they are)
examples:
    @{{python}} -m tools.synthetic examples

# the whole test suite
test *args:
    @{{python}} -m pytest "$@"

# accuracy against transcripts: [sets=../shared/eval] [manifest=M truth=T] [generated=N] [engine=tesseract,tesseract:layout=page] [out=eval-out] [standin=ppocrv6|none]
eval *args:
    @{{python}} -m tools.evaluate "$@"

# measure speed and write BENCHMARKS.md: [pages=N] [workers=W]
bench *args:
    @{{python}} -m tools.bench "$@"
