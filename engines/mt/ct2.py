"""Neural MT on CTranslate2: the product's main MT engine for users who bring a converted model
(OPUS-MT/Marian, NLLB, M2M-100 ...). It continues a forced target prefix, so the incremental
policy can pin what it already committed and let the model finish the sentence around it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from babelcall.engines.models import resolve
from babelcall.realtime.errors import EngineUnavailable, ModelNotFound, UnsupportedLanguage

SHARED_SPM = ("sentencepiece.model", "spm.model", "sentencepiece.bpe.model")
SPECIAL = frozenset({"<s>", "</s>", "<pad>", "<blank>"})


def _load_spm(path: Path):  # -> sentencepiece.SentencePieceProcessor
    try:
        import sentencepiece
    except ImportError as e:  # a dev/optional dependency, not in the base install
        raise EngineUnavailable("the CTranslate2 MT engine needs sentencepiece: "
                                "pip install sentencepiece") from e
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise ModelNotFound(f"{path} is not a readable SentencePiece model: {e}") from e


def _find_spm(directory: Path) -> tuple[Path, Path]:
    """Marian/OPUS-MT ship one model per side; NLLB/M2M share one."""
    src, tgt = directory / "source.spm", directory / "target.spm"
    if src.is_file() and tgt.is_file():
        return src, tgt
    for name in SHARED_SPM:
        if (directory / name).is_file():
            return directory / name, directory / name
    raise ModelNotFound(
        f"no SentencePiece model in {directory}: expected source.spm + target.spm, or one of "
        f"{', '.join(SHARED_SPM)} (copy it from the original model next to model.bin)")


def _read_vocabulary(directory: Path, side: str) -> set[str]:
    """Tokens the model can emit or read; language tokens of NLLB/M2M live only here (they are
    added on top of the SentencePiece vocabulary)."""
    for stem in (f"{side}_vocabulary", "shared_vocabulary"):
        if (directory / f"{stem}.json").is_file():
            return set(json.loads((directory / f"{stem}.json").read_text(encoding="utf-8")))
        if (directory / f"{stem}.txt").is_file():
            text = (directory / f"{stem}.txt").read_text(encoding="utf-8")
            return set(text.splitlines())
    return set()


class Ct2Translator:
    """A CTranslate2 translation model with its SentencePiece tokenizer(s).

    ``lang_token_format`` enables NLLB/M2M-style language tokens: a format such as
    ``"__{lang}__"`` (M2M-100) or a mapping ``{"en": "eng_Latn", ...}`` (NLLB). The source gets
    ``[src_token] + pieces + ["</s>"]`` and the target prefix starts with the target token, as
    those models were trained. Without it the model is a single-pair model (Marian) and
    ``pairs`` says which pair(s) it serves (None: trust the caller)."""

    name = "ctranslate2"
    supports_prefix = True
    shares_compute = True  # a neural model on the same cores/GPU as Whisper and Kokoro

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str = "auto",
        compute_type: str = "default",
        inter_threads: int = 1,
        intra_threads: int = 0,
        beam_size: int = 4,
        max_decoding_length: int = 256,
        pairs: Iterable[tuple[str, str]] | None = None,
        lang_token_format: str | Mapping[str, str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = resolve(model, required=("model.bin",), models=models_dir)
        src_spm, tgt_spm = _find_spm(self.path)
        self._src_sp = _load_spm(src_spm)
        self._tgt_sp = self._src_sp if tgt_spm == src_spm else _load_spm(tgt_spm)
        self.beam_size = beam_size
        self.max_decoding_length = max_decoding_length
        self.pairs = None if pairs is None else {(s, t) for s, t in pairs}
        self._lang_format = lang_token_format
        self._src_vocab = _read_vocabulary(self.path, "source") if lang_token_format else set()
        self._tgt_vocab = _read_vocabulary(self.path, "target") if lang_token_format else set()
        # one Translator serves every session's worker thread: CTranslate2 is thread-safe
        self.device, self._translator = self._open(device, compute_type, inter_threads,
                                                   intra_threads)

    def _open(self, device: str, *args: int | str) -> tuple[str, object]:
        """``auto`` means the GPU when it works: a visible GPU whose CUDA libraries do not match
        the wheel (it loads cuBLAS 12 lazily, at the first matrix product) falls back to the
        CPU."""
        import ctranslate2

        if device == "auto":
            if ctranslate2.get_cuda_device_count() > 0:
                try:
                    return "cuda", self._load("cuda", *args)
                except EngineUnavailable:
                    pass
            device = "cpu"
        return device, self._load(device, *args)

    def _load(self, device: str, compute_type: str, inter_threads: int, intra_threads: int):
        import ctranslate2

        try:
            translator = ctranslate2.Translator(
                str(self.path), device=device, compute_type=compute_type,
                inter_threads=inter_threads, intra_threads=intra_threads)
        except (RuntimeError, ValueError, OSError) as e:
            text = str(e)
            if device == "cuda" and any(k in text.lower() for k in ("cuda", "cublas", "gpu")):
                raise EngineUnavailable(
                    f"CTranslate2 cannot use CUDA for {self.path}: {text}; use device='cpu'"
                ) from e
            raise ModelNotFound(
                f"{self.path} is not a loadable CTranslate2 model ({text}); re-convert it with "
                "ct2-transformers-converter / ct2-opus-mt-converter") from e
        if device == "cuda":  # fail here, not in the first session, if cuBLAS cannot load
            try:
                translator.translate_batch([["</s>"]], beam_size=1, max_decoding_length=1)
            except RuntimeError as e:
                raise EngineUnavailable(f"CTranslate2 cannot run on CUDA: {e}; "
                                        "use device='cpu'") from e
        return translator

    def lang_token(self, lang: str) -> str | None:
        fmt = self._lang_format
        if fmt is None:
            return None
        if isinstance(fmt, str):
            return fmt.format(lang=lang)
        return fmt.get(lang)

    def supports(self, source: str, target: str) -> bool:
        if self.pairs is not None and (source, target) not in self.pairs:
            return False
        if self._lang_format is None:
            return True
        src_tok, tgt_tok = self.lang_token(source), self.lang_token(target)
        return (src_tok is not None and tgt_tok is not None
                and (not self._src_vocab or src_tok in self._src_vocab)
                and (not self._tgt_vocab or tgt_tok in self._tgt_vocab))

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]:
        """Each result is the full target text and starts with its prefix verbatim: the prefix is
        forced as tokens and only the continuation is detokenized, so SentencePiece
        normalisation can never rewrite text the listener has already heard."""
        if not self.supports(source, target):
            raise UnsupportedLanguage(
                f"CTranslate2 model {self.path} does not translate {source}->{target}")
        prefixes = list(target_prefixes) if target_prefixes is not None else [""] * len(sources)
        if len(prefixes) != len(sources):
            raise ValueError("target_prefixes must have one entry per source")
        results = list(prefixes)  # an empty source translates to its prefix alone
        todo = [i for i, text in enumerate(sources) if text.strip()]
        if not todo:
            return results
        src_tok, tgt_tok = self.lang_token(source), self.lang_token(target)
        batch, forced = [], []
        for i in todo:
            pieces = self._src_sp.encode(sources[i].strip(), out_type=str)
            batch.append([src_tok, *pieces, "</s>"] if src_tok else pieces)
            prefix = self._tgt_sp.encode(prefixes[i], out_type=str) if prefixes[i].strip() else []
            forced.append([tgt_tok, *prefix] if tgt_tok else prefix)
        outputs = self._translator.translate_batch(
            batch, target_prefix=forced if any(forced) else None, beam_size=self.beam_size,
            # CTranslate2 counts the forced prefix in the decoding length
            max_decoding_length=self.max_decoding_length + max(len(f) for f in forced))
        for i, prefix_tokens, out in zip(todo, forced, outputs, strict=True):
            tokens = out.hypotheses[0][len(prefix_tokens):]
            results[i] = self._join(prefixes[i], tokens, tgt_tok)
        return results

    def _join(self, prefix: str, tokens: list[str], lang_tok: str | None) -> str:
        tokens = [t for t in tokens if t not in SPECIAL and t != lang_tok]
        text = self._tgt_sp.decode_pieces(tokens).strip() if tokens else ""
        if not text:
            return prefix
        if not prefix:
            return text
        # a piece starting with "▁" opens a new word; otherwise it continues the prefix's last one
        new_word = tokens[0].startswith("▁") and not prefix[-1].isspace()
        return prefix + (" " if new_word else "") + text
