"""faster-whisper ASR with a short encoder window.

Whisper's encoder normally runs on a 30 s window whatever the audio length (~0.65 s on 2 CPU
threads), which dominates a streaming loop that re-transcribes a few seconds every update.
CTranslate2 accepts a shorter window, so we encode only the buffer plus a margin (measured
10x cheaper for 4 s of audio) and decode *with* timestamp tokens, which lets the model close the
segment instead of looping; a bounded ``max_length`` and a repetition check fall back to the
full 30 s window when the short one misbehaves. Word times come from the cross-attention
alignment that faster-whisper itself uses (``find_alignment``)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import ctranslate2
import numpy as np

from babelcall.engines.models import resolve
from babelcall.realtime.cost import charge, native_threads
from babelcall.realtime.errors import EngineUnavailable, ModelNotFound, UnsupportedLanguage
from babelcall.realtime.types import Word

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # mel frames (hop 160)
FULL_WINDOW_S = 30
PREPEND_PUNCT = "\"'“¿([{-"
APPEND_PUNCT = "\"'.。,，!！?？:：”)]}、"
MAX_PASSES = 4  # decoding passes over one buffer (Whisper's seek loop, bounded)
MIN_REST_S = 0.5  # a stop this close to the end of the audio is the end
PROMPT_CHARS = 200  # of the text so far, prompting a continuation pass
LOOP_UNIT, LOOP_REPEATS = 4, 4  # a unit of up to 4 tokens said 4 times in a row is a loop
LOOP_SPAN = 8  # ... and so is a run of 8 tokens said twice


@dataclass(frozen=True)
class WhisperOptions:
    """Decoding knobs. ``margin_s`` is the silence added after the audio in the short window:
    too little and the decoder repeats itself (seen with 0 s), 2 s matched the 30 s window's
    WER on FLEURS here."""

    beam_size: int = 1
    margin_s: float = 2.0
    max_tokens_per_s: float = 8.0
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    short_window: bool = True


class FasterWhisperAsr:
    """One loaded Whisper model, shared by every session (calls are serialised per model)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str = "whisper-base", *, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 0,
                 models_dir: str | None = None, options: WhisperOptions | None = None) -> None:
        from faster_whisper import WhisperModel

        path = resolve(model, required=("model.bin", "config.json"), models=models_dir)
        # one thread by default: the scheduler runs one model call per core (see ComputeGate),
        # and a second thread bought little here (~8 % more CPU per call for the same words)
        threads = cpu_threads or 1
        self.threads = threads
        before = native_threads()
        try:
            self._model = WhisperModel(str(path), device=device, compute_type=compute_type,
                                       cpu_threads=threads)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelNotFound(f"could not load Whisper model from {path}: {exc}") from exc
        if threads > 1:  # CTranslate2 starts its OpenMP pool at the first computation
            self._model.model.encode(ctranslate2.StorageView.from_array(
                np.zeros((1, self._model.feature_extractor.mel_filters.shape[0], 200),
                         np.float32)))
        # CTranslate2 computes on worker threads of its own, never on the caller's: the cost
        # account (realtime/cost.py) reads their CPU clocks
        self.cpu_threads = frozenset(native_threads() - before)
        self.model_name = str(model)
        self.options = options or WhisperOptions()
        self._lock = threading.Lock()
        self._tokenizers: dict[tuple[str, str], object] = {}

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def detect_language(self, audio: np.ndarray, candidates: set[str] | None = None
                        ) -> tuple[str, float]:
        """Whisper's language ID on 16 kHz speech: the most probable language among
        ``candidates`` (all when None) and its probability."""
        if not self.multilingual:
            raise UnsupportedLanguage("this Whisper model is English-only: it cannot tell "
                                      "languages apart")
        with self._lock, charge("asr", threads=self.cpu_threads):
            _, _, probs = self._model.detect_language(audio=np.asarray(audio, np.float32))
        ranked = [(lang, p) for lang, p in probs if candidates is None or lang in candidates]
        if not ranked:
            raise UnsupportedLanguage(f"Whisper knows none of {sorted(candidates or [])}")
        return max(ranked, key=lambda lp: lp[1])

    def _tokenizer(self, language: str, task: str):  # -> faster_whisper.tokenizer.Tokenizer
        from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer

        key = (language, task)
        if key not in self._tokenizers:
            if language not in _LANGUAGE_CODES:
                raise UnsupportedLanguage(f"Whisper does not know language '{language}'")
            if not self.multilingual and (language != "en" or task != "transcribe"):
                raise UnsupportedLanguage(
                    f"{self.model_name} is English-only; use a multilingual Whisper model "
                    f"for '{language}' / task '{task}'")
            self._tokenizers[key] = Tokenizer(self._model.hf_tokenizer, self.multilingual,
                                              task=task, language=language)
        return self._tokenizers[key]

    def transcribe(self, audio: np.ndarray, *, language: str, prompt: str = "",
                   task: str = "transcribe") -> list[Word]:
        return self.transcribe_batch([audio], language=language, prompts=[prompt], task=task)[0]

    def transcribe_batch(self, audios: list[np.ndarray], *, language: str,
                         prompts: list[str] | None = None,
                         task: str = "transcribe") -> list[list[Word]]:
        """Several buffers (e.g. of different sessions) in one encoder and decoder pass; they
        share the language and task because the decoder's start sequence does.

        Like Whisper's own ``transcribe()``, a buffer whose decoding stopped before the end of
        its audio (at a segment boundary, or with an unfinished last segment) is decoded again
        from that point, with the text so far as prompt: a single pass lost the last words
        of long buffers."""
        tokenizer = self._tokenizer(language, task)
        prompts = prompts or [""] * len(audios)
        audios = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        out: list[list[Word]] = [[] for _ in audios]
        # index -> (audio still to read, prompt, its offset in the buffer in seconds)
        todo = {i: (a, prompts[i], 0.0) for i, a in enumerate(audios)
                if len(a) >= SAMPLE_RATE // 10}
        with self._lock, charge("asr", threads=self.cpu_threads):
            for _ in range(MAX_PASSES):
                if not todo:
                    break
                idx = list(todo)
                passes = self._pass([todo[i][0] for i in idx], tokenizer,
                                    [todo[i][1] for i in idx])
                nxt = {}
                for i, (words, resume_s) in zip(idx, passes, strict=True):
                    audio, prompt, offset = todo[i]
                    out[i] += [w.shifted(offset) for w in words]
                    if resume_s is not None and len(audio) / SAMPLE_RATE - resume_s >= MIN_REST_S:
                        cut = int(resume_s * SAMPLE_RATE)
                        said = "".join(w.text for w in words)
                        nxt[i] = (audio[cut:], (prompt + said)[-PROMPT_CHARS:],
                                  offset + cut / SAMPLE_RATE)
                todo = nxt
        return out

    def _pass(self, audios: list[np.ndarray], tokenizer, prompts: list[str]
              ) -> list[tuple[list[Word], float | None]]:
        """One decoding pass over each buffer: the short window where it fits and behaves,
        else the full 30 s one. Per buffer: its words and where decoding stopped early
        (None: it reached the end)."""
        out: list[tuple[list[Word], float | None] | None] = [None] * len(audios)
        todo = list(range(len(audios)))
        if self.options.short_window:
            short = [i for i in todo if len(audios[i]) / SAMPLE_RATE
                     + self.options.margin_s < FULL_WINDOW_S]
            for i, res in zip(short, self._decode([audios[i] for i in short], tokenizer,
                                                  [prompts[i] for i in short], short=True),
                              strict=True):
                out[i] = res
        todo = [i for i, r in enumerate(out) if r is None]
        if todo:
            clipped = [audios[i][: FULL_WINDOW_S * SAMPLE_RATE] for i in todo]
            for i, res in zip(todo, self._decode(clipped, tokenizer, [prompts[i] for i in todo],
                                                 short=False), strict=True):
                out[i] = res or ([], None)
            for i in todo:  # the full window reads 30 s: go on after it
                words, resume = out[i]  # type: ignore[misc]
                if resume is None and len(audios[i]) > FULL_WINDOW_S * SAMPLE_RATE:
                    end = words[-1].end if words else 0.0
                    out[i] = (words, end if end > 1.0 else float(FULL_WINDOW_S))
        return [r or ([], None) for r in out]

    def _decode(self, audios: list[np.ndarray], tokenizer, prompts: list[str], *,
                short: bool) -> list[tuple[list[Word], float | None] | None]:
        """One batched encoder+decoder pass: per item its words and where the decoder stopped
        early (see ``_trim``); None for an item whose short window gave a suspicious result
        (the caller retries it with the full window)."""
        if not audios:
            return []
        model = self._model
        durs = [len(a) / SAMPLE_RATE for a in audios]
        window_s = min(FULL_WINDOW_S, math.ceil(max(durs) + self.options.margin_s)) if short \
            else FULL_WINDOW_S
        n_frames = window_s * FRAMES_PER_SECOND
        feats = []
        for audio in audios:
            padded = np.zeros(window_s * SAMPLE_RATE + 160, dtype=np.float32)
            padded[: len(audio)] = audio
            feats.append(model.feature_extractor(padded)[:, :n_frames])
        batch = np.ascontiguousarray(np.stack(feats))
        try:
            encoded = model.model.encode(ctranslate2.StorageView.from_array(batch),
                                         to_cpu=False)
        except RuntimeError as exc:
            raise EngineUnavailable(f"Whisper encoder failed: {exc}") from exc
        previous = [tokenizer.encode(" " + p.strip())[-200:] if p.strip() else []
                    for p in prompts]
        max_new = [int(d * self.options.max_tokens_per_s) + 12 for d in durs]
        results: list = [None] * len(audios)
        # CTranslate2 wants <|startoftranscript|> at one position across a batch: decode the
        # prompted and unprompted items apart, prompts cut to their common length.
        for group in ([i for i, p in enumerate(previous) if p],
                      [i for i, p in enumerate(previous) if not p]):
            if not group:
                continue
            keep = min(len(previous[i]) for i in group)
            prompt_ids = [model.get_prompt(tokenizer, previous[i][len(previous[i]) - keep:],
                                           without_timestamps=False) for i in group]
            sub = encoded if len(group) == len(audios) else _select(encoded, group)
            for i, result in zip(group, model.model.generate(
                    sub, prompt_ids, beam_size=self.options.beam_size,
                    max_length=min(448, len(prompt_ids[0]) + max(max_new[i] for i in group)),
                    return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                    suppress_tokens=[-1]), strict=True):
                results[i] = result
        out: list[tuple[list[Word], float | None] | None] = []
        to_align: dict[int, list[int]] = {}
        for i, result in enumerate(results):
            ids = result.sequences_ids[0]
            # CTranslate2 scores are already length-normalised (length_penalty=1).
            avg_logprob = result.scores[0] if result.scores else 0.0
            if result.no_speech_prob > self.options.no_speech_threshold and \
                    avg_logprob < self.options.log_prob_threshold:
                out.append(([], None))
                continue
            text_ids, looped, resume = _trim(ids, tokenizer, durs[i])
            if short and ((not text_ids and len(ids) > 2)
                          or (len(ids) >= max_new[i] and not looped and resume is None)):
                out.append(None)  # did not close the segment: let the full window try
                continue
            out.append(([], resume))
            if text_ids:
                to_align[i] = text_ids
        if to_align:
            idx = list(to_align)
            frames = [min(n_frames, int(durs[i] * FRAMES_PER_SECOND) + 1) for i in idx]
            sub = encoded if len(idx) == len(audios) else _select(encoded, idx)
            for i, words in zip(idx, _align(model, tokenizer, [to_align[i] for i in idx], sub,
                                            frames, [durs[i] for i in idx]), strict=True):
                out[i] = (words, out[i][1])  # type: ignore[index]
        return out


def _select(encoded: ctranslate2.StorageView, idx: list[int]) -> ctranslate2.StorageView:
    arr = np.asarray(encoded.to_device(ctranslate2.Device.cpu)) if encoded.device != "cpu" \
        else np.asarray(encoded)
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[idx]))


def _trim(ids: list[int], tokenizer, dur: float) -> tuple[list[int], bool, float | None]:
    """Text tokens of the real transcript, whether a decoder loop was cut off, and where the
    decoder stopped before the end of the audio (None: it did not).

    In a short window Whisper often does not close the segment: it emits a timestamp at or past
    the end of the audio and starts the text over; text after such a timestamp is cut here, and
    so is a loop (``_loop_start``). Early stops follow Whisper's own seek rule: output that ends
    on a timestamp pair stopped at that time; a last segment with no closing timestamp is
    unfinished, dropped and read again from its start; a single closing timestamp means no
    speech after it."""
    begin = tokenizer.timestamp_begin
    text: list[int] = []
    closed = 0  # text tokens up to the end of the last closed segment
    last_t: float | None = None  # the latest timestamp
    prev_text = False
    pair_end = False  # the output ended on two timestamps in a row
    past_end = False
    for tok in ids:
        if tok >= begin:
            t = (tok - begin) * 0.02
            if text and t >= dur - 0.1:
                past_end = True
                break
            if prev_text:
                closed = len(text)
                pair_end = False
            else:
                pair_end = last_t is not None
            last_t, prev_text = t, False
            continue
        if tok < tokenizer.eot:
            text.append(tok)
            prev_text, pair_end = True, False
    resume: float | None = None
    if not past_end and last_t is not None:
        if prev_text and closed > 0:  # an unfinished segment after closed ones
            text, resume = text[:closed], last_t
        elif pair_end:
            resume = last_t
    cut = _loop_start(text, tokenizer)
    if cut is not None:
        return text[:cut], True, None
    return text, False, resume


def _loop_start(text: list[int], tokenizer) -> int | None:
    """Where a decoder loop starts in ``text``, or None. A loop is a short unit (up to
    ``LOOP_UNIT`` tokens) said ``LOOP_REPEATS`` times in a row, or a run of ``LOOP_SPAN`` tokens
    said twice: speech repeats two or three tokens ("de la", a name) often, a whole clause
    rarely, so shorter repeats are not taken for loops (the trigram rule used before cut
    real sentences short)."""
    n = len(text)
    for j in range(n):
        for k in range(1, LOOP_UNIT + 1):
            if j + k * LOOP_REPEATS > n:
                break
            unit = text[j:j + k]
            if all(text[j + m * k:j + (m + 1) * k] == unit for m in range(1, LOOP_REPEATS)):
                return j + k
    first: dict[tuple[int, ...], int] = {}
    for j in range(n - LOOP_SPAN + 1):
        gram = tuple(text[j: j + LOOP_SPAN])
        if gram in first:
            i = first[gram]
            while i > 0 and j > i + 1 and _same_word(tokenizer, text[i - 1], text[j - 1]):
                i, j = i - 1, j - 1
            return j
        first[gram] = j
    return None


def _same_word(tokenizer, a: int, b: int) -> bool:
    return a == b or tokenizer.decode([a]).strip().lower() == tokenizer.decode([b]).strip().lower()


def _align(model, tokenizer, text_ids: list[list[int]], encoded, num_frames: list[int],
           durs: list[float]) -> list[list[Word]]:
    from faster_whisper.transcribe import merge_punctuations

    # find_alignment hands num_frames to CTranslate2's align, which takes one per item.
    alignments = model.find_alignment(tokenizer, text_ids, encoded, num_frames)
    out = []
    for alignment, dur in zip(alignments, durs, strict=True):
        merge_punctuations(alignment, PREPEND_PUNCT, APPEND_PUNCT)
        words = []
        for item in alignment:
            text = item["word"]
            if not text.strip():
                continue
            start = min(float(item["start"]), dur)
            end = min(max(float(item["end"]), start), dur)
            words.append(Word(text, start, end, float(item["probability"])))
        out.append(words)
    return out
