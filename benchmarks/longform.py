"""Long-form bench: does the listener keep pace over a whole talk, not just a phrase?

The dev clips of one language are joined into one continuous talk (speech trimmed, 0.4 s
between sentences) and played into one session; or two speakers take turns (a dialogue,
each with a session into the other's language). From the session's events it reports, for
every source word the session recognised, when the listener hears its translation (the
ear-voice span: p50/p90 and its slope over the talk), how far behind the listener is at each
sentence's end, the talk's EndOffset, clauses merged / caption-only, and the heard chrF of the
whole talk (the judge). ``fast``: the compute-free replay on a simulated clock (the policy's
lag alone); otherwise real time on this machine (policy plus compute).

A word's hearing time: every clause carries the source span its text was translated from;
clauses made from the same span share it and play one after another. A word at a fraction
``f`` of that span is heard when ``f`` of the span's translated audio has played (speech is
spread evenly over its audio: a stated approximation, exact at the span's ends)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.run import Clip

RATE = 16000
GAP_S = 0.4  # between sentences of a talk (the issue's ~50 s talk)
TURN_GAP_S = 1.0
WORD_SLACK_S = 0.5  # between turns of a dialogue: the next speaker answers after a beat


@dataclass
class Sentence:
    clip: str
    start_s: float  # speech start in the talk
    end_s: float  # speech end in the talk
    src_ref: str
    tgt_ref: str


@dataclass
class Talk:
    """One speaker's track: their sentences at their times, silence between."""

    path: Path
    source: str
    target: str
    sentences: list[Sentence] = field(default_factory=list)
    duration_s: float = 0.0


def trim(pcm: np.ndarray, rate: int = RATE) -> np.ndarray:
    """The speech of a clip without its leading and trailing silence, so the gap between
    sentences of a talk is the gap asked for. Speech is what the voice detector (Silero, as
    in faster-whisper) hears, padded 0.1 s: a loudness threshold cut fleurs-en-000, a quiet
    reader, after 3.6 of its 7.9 s of speech, so every talk until 2026-12-07 lacked half of
    its first sentence."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from babelcall.benchmarks.run import to_16k

    spans = get_speech_timestamps(to_16k(pcm, rate), VadOptions(min_silence_duration_ms=300,
                                                                speech_pad_ms=100))
    if not spans:
        return pcm
    scale = rate / 16000  # the detector's rate; the room bench trims at the wire's 48 kHz
    return pcm[round(spans[0]["start"] * scale):round(spans[-1]["end"] * scale)]


def build_tracks(turns: list[tuple[int, Clip]], speakers: int, gap_s: float,
                 lead_s: float = 0.5) -> tuple[list[np.ndarray], list[list[Sentence]]]:
    """``turns``: (speaker, clip) in speaking order. Each speaker's track holds their clips at
    the times they speak them (one after another, ``gap_s`` between) and silence otherwise."""
    from babelcall.realtime.audio import load_file

    pieces: list[tuple[int, Clip, np.ndarray, float]] = []
    t = lead_s
    for who, clip in turns:
        pcm = trim(load_file(clip.path, RATE))
        pieces.append((who, clip, pcm, t))
        t += len(pcm) / RATE + gap_s
    total = int((t + 2.0) * RATE)  # the last sentence's pause is heard as such
    tracks = [np.zeros(total, np.float32) for _ in range(speakers)]
    sentences: list[list[Sentence]] = [[] for _ in range(speakers)]
    for who, clip, pcm, start in pieces:
        i = int(start * RATE)
        tracks[who][i:i + len(pcm)] = pcm
        sentences[who].append(Sentence(clip.name, round(start, 3),
                                       round(start + len(pcm) / RATE, 3),
                                       clip.src_ref, clip.tgt_ref))
    return tracks, sentences


def make_talk(clips: list[Clip], source: str, target: str, folder: Path,
              gap_s: float = GAP_S) -> Talk:
    from babelcall.realtime.audio import write_wav

    (track,), (sentences,) = build_tracks([(0, c) for c in clips], 1, gap_s)
    path = folder / f"talk-{source}-{target}.wav"
    write_wav(path, track, RATE)
    return Talk(path, source, target, sentences, len(track) / RATE)


def make_dialogue(a: list[Clip], b: list[Clip], pair: tuple[str, str], folder: Path,
                  gap_s: float = TURN_GAP_S) -> tuple[Talk, Talk]:
    """Speaker A (``pair[0]``) and B (``pair[1]``) take turns, A first, one sentence a turn;
    each is interpreted into the other's language."""
    from babelcall.realtime.audio import write_wav

    turns = [(i % 2, (a if i % 2 == 0 else b)[i // 2]) for i in range(2 * min(len(a), len(b)))]
    tracks, sentences = build_tracks(turns, 2, gap_s)
    talks = []
    for who, (src, tgt) in enumerate((pair, pair[::-1])):
        path = folder / f"dialogue-{src}-{tgt}.wav"
        write_wav(path, tracks[who], RATE)
        talks.append(Talk(path, src, tgt, sentences[who], len(tracks[who]) / RATE))
    return talks[0], talks[1]


# -- where each word is heard -------------------------------------------------------------


@dataclass
class Unit:
    """The translated speech made from one source span: its clauses' audio, in play order."""

    start_s: float
    end_s: float
    plays: list[tuple[float, float]] = field(default_factory=list)  # (start s, duration s)

    def heard_at(self, t: float) -> float:
        """When the listener hears source instant ``t`` of this span (seconds, talk clock)."""
        plays = sorted(self.plays)
        total = sum(d for _, d in plays)
        frac = 1.0 if self.end_s <= self.start_s else \
            min(1.0, max(0.0, (t - self.start_s) / (self.end_s - self.start_s)))
        want = frac * total
        for start, dur in plays:
            if want <= dur:
                return start + want
            want -= dur
        return plays[-1][0] + plays[-1][1]


def units(records: list[dict[str, Any]]) -> list[Unit]:
    """The translated speech grouped by the source it was made from. A phrase's committed
    text grows: each commit's span runs from the phrase's start to its newest word, so a
    unit covers only what its commit added, from the end of the one before it."""
    by_span: dict[tuple[int, float, float], Unit] = {}
    for r in records:
        if r["type"] != "synth_audio":
            continue
        key = (r["utt"], r["src_start"], r["src_end"])
        unit = by_span.setdefault(key, Unit(r["src_start"], r["src_end"]))
        unit.plays.append((r.get("play_start_ms", r["wall_ms"]) / 1000, r["duration_ms"] / 1000))
    out = sorted(by_span.items(), key=lambda kv: (kv[0][1], kv[0][2]))
    for (key0, _), (key, unit) in zip(out, out[1:], strict=False):
        if key[:2] == key0[:2]:  # same phrase: starts where the commit before it ended
            unit.start_s = key0[2]
    return [u for _, u in out]


def skipped_spans(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(r["src_start"], r["src_end"]) for r in records if r["type"] == "speech_skipped"]


def said_words(talk: Talk) -> list[tuple[str, float, float]]:
    """When the speaker said each word of the talk: the judge's word timestamps on the source
    track (full window, not the streaming engine under test, whose partial-buffer word times
    drift towards the buffer's end)."""
    from babelcall.benchmarks.judge import judge
    from babelcall.realtime.audio import load_file

    track = load_file(talk.path, RATE)
    words: list[tuple[str, float, float]] = []
    for s in talk.sentences:  # one sentence at a time: a whole talk in 30 s windows loses some
        lo = max(0, int((s.start_s - 0.1) * RATE))
        cut = track[lo:int((s.end_s + 0.1) * RATE)]
        words += [(w, a + lo / RATE, b + lo / RATE) for w, a, b in judge().words(cut, talk.source)]
    return words


def word_lags(records: list[dict[str, Any]], words: list[tuple[str, float, float]]
              ) -> tuple[list[tuple[float, float]], int]:
    """(word end s, ear-voice span s) for every voiced word of ``words`` (when the speaker
    said them), and the count of words shown only as captions (their clause was not
    voiced). A word no clause covers (not recognised, or lost) is left out of both."""
    us = units(records)
    skipped = skipped_spans(records)
    lags: list[tuple[float, float]] = []
    caption_only = 0
    for _, start, end in sorted(words, key=lambda w: w[1]):
        t = (start + end) / 2
        if any(s - 1e-3 <= t <= e + 1e-3 for s, e in skipped):
            caption_only += 1
            continue
        # the span holding the word (the two transcribers' word times differ by a little:
        # the nearest span within WORD_SLACK_S)
        gap, unit = min(((max(u.start_s - t, t - u.end_s, 0.0), u) for u in us),
                        key=lambda gu: gu[0], default=(None, None))
        if unit is not None and gap is not None and gap <= WORD_SLACK_S:
            lags.append((end, unit.heard_at(end) - end))
    return lags, caption_only


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of lag over talk time (s per s); None for fewer than 3 points."""
    if len(points) < 3:
        return None
    x, y = np.array(points, dtype=np.float64).T
    return round(float(np.polyfit(x, y, 1)[0]), 4)


def sentence_lags(lags: list[tuple[float, float]], sentences: list[Sentence]
                  ) -> list[float | None]:
    """Per sentence: how far behind the speaker the listener is at the sentence's end — the
    ear-voice span of its last voiced word (the silence after it is not lag)."""
    out: list[float | None] = []
    for s in sentences:
        inside = [(t, lag) for t, lag in lags if s.start_s - 0.2 <= t <= s.end_s + 0.3]
        out.append(round(max(inside)[1], 2) if inside else None)
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def analyse(talk: Talk, records: list[dict[str, Any]], metrics: dict[str, Any],
            words: list[tuple[str, float, float]]) -> dict[str, Any]:
    """The long-form figures of one replayed talk from its records and when each word was
    said (``words``; no audio needed)."""
    lags, caption_only = word_lags(records, words)
    spans = [lag for _, lag in lags]
    _, end_offset = M.offsets(records)
    clauses = len({r["clause"] for r in records if r["type"] == "synth_audio"})
    skipped = sum(1 for r in records if r["type"] == "speech_skipped")
    talk_end = max(s.end_s for s in talk.sentences)
    audio_end = max((r.get("play_start_ms", r["wall_ms"]) + r["duration_ms"]) / 1000
                    for r in records if r["type"] == "synth_audio") if clauses else None
    return {
        "pair": f"{talk.source}-{talk.target}", "talk_s": round(talk.duration_s, 1),
        "sentences": len(talk.sentences), "words": len(spans) + caption_only,
        "ear_voice_s": {"p50": pct(spans, 50), "p90": pct(spans, 90),
                        "max": pct(spans, 100)},
        "slope_s_per_s": slope(lags),
        "sentence_end_lag_s": sentence_lags(lags, talk.sentences),
        # the translation's last audio after the speaker's last word (the session's words)
        "end_offset_s": round(end_offset / 1000, 2) if end_offset is not None else None,
        "after_talk_s": round(audio_end - talk_end, 2) if audio_end is not None else None,
        "clauses_voiced": clauses, "clauses_caption_only": skipped,
        "clauses_merged": metrics.get("merges", 0), "words_caption_only": caption_only,
        "lag_series": [[round(t, 2), round(lag, 2)] for t, lag in lags],
    }


def heard_score(talk: Talk, audio: np.ndarray, rate: int, records: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """The judge's hearing of the whole talk's translated speech, scored against the joined
    references (or, without references, against the committed translation: a round trip)."""
    from babelcall.benchmarks.pairs import scores
    from babelcall.benchmarks.run import compact, hear

    heard = hear(compact(audio, rate), rate, talk.target)
    said = M.committed_target(records)
    refs = " ".join(s.tgt_ref for s in talk.sentences).strip()
    bleu, chrf = scores([heard], [refs or said])
    text_bleu, text_chrf = scores([said], [refs]) if refs else (None, None)
    return {"heard_chrf": chrf, "heard_bleu": bleu, "text_chrf": text_chrf,
            "text_bleu": text_bleu, "round_trip": not refs, "heard": heard, "said": said}


async def run_talk(engines: Any, talk: Talk, *, fast: bool, config: Any = None,
                   scheduler: Any = None) -> dict[str, Any]:
    from babelcall.realtime.replay import replay
    from babelcall.realtime.session import SessionConfig

    config = config or SessionConfig(talk.source, talk.target)
    res = await replay(engines, config, talk.path, fast=fast, scheduler=scheduler)
    out = analyse(talk, res.records, res.metrics, said_words(talk))
    out.update(heard_score(talk, res.audio, res.rate, res.records))
    out["mode"] = "fast (compute-free, simulated clock)" if fast else "real time"
    out["wall_s"] = round(res.wall_s, 1)
    return out


async def run_dialogue(engines: Any, a: Talk, b: Talk, *, fast: bool) -> dict[str, Any]:
    """Both speakers' sessions over the same call. Fast: one after the other (compute-free,
    they cannot slow each other); real time: at once, on one scheduler."""
    if fast:
        runs = [await run_talk(engines, t, fast=True) for t in (a, b)]
    else:
        from babelcall.realtime.scheduler import Scheduler

        async with Scheduler(engines) as sched:
            runs = list(await asyncio.gather(*(run_talk(engines, t, fast=False,
                                                         scheduler=sched) for t in (a, b))))
    turn_lags = [lag for run in runs for lag in run["sentence_end_lag_s"] if lag is not None]
    return {"speakers": runs, "turn_end_lag_s": {"p50": pct(turn_lags, 50),
                                                 "p90": pct(turn_lags, 90),
                                                 "max": pct(turn_lags, 100)}}


# -- report ---------------------------------------------------------------------------------


def talk_row(r: dict[str, Any]) -> str:
    ev = r["ear_voice_s"]
    ends = ", ".join("–" if x is None else f"{x:g}" for x in r["sentence_end_lag_s"])
    return (f"| {r['pair']} | {r['mode'].split(' ')[0]} | {r['talk_s']} | {ev['p50']} / "
            f"{ev['p90']} | {r['slope_s_per_s']} | {ends} | {r['after_talk_s']} | "
            f"{r['clauses_merged']} / {r['clauses_caption_only']} of {r['clauses_voiced']} | "
            f"{r['heard_chrf']} |")


TABLE_HEAD = ["| pair | mode | talk s | ear-voice p50 / p90 s | slope s/s | behind at each "
              "sentence end s | after the talk s | merged / caption-only of voiced | "
              "heard chrF |", "|---|---|---|---|---|---|---|---|---|"]


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 4) if values else None


def medians(talks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pair, the median of its runs' figures: a real-time run's lag moves by seconds
    with what else the machine does, so one run cannot tell two policies apart."""
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for r in talks:
        by_pair.setdefault(r["pair"], []).append(r)
    out = []
    for pair, runs in by_pair.items():
        after = [r["after_talk_s"] for r in runs if r["after_talk_s"] is not None]
        out.append({
            "pair": pair, "runs": len(runs),
            "ear_voice_p50_s": _median([r["ear_voice_s"]["p50"] for r in runs]),
            "ear_voice_p90_s": _median([r["ear_voice_s"]["p90"] for r in runs]),
            "slope_s_per_s": _median([r["slope_s_per_s"] for r in runs]),
            "worst_sentence_end_s": _median([max((x for x in r["sentence_end_lag_s"]
                                                  if x is not None), default=None)
                                             for r in runs]),
            "after_talk_s": _median(after),
            "after_talk_range_s": [min(after), max(after)] if after else None,
            "heard_chrf": _median([r.get("heard_chrf") for r in runs])})
    return out


MEDIAN_HEAD = ["| pair | runs | ear-voice p50 / p90 s | slope s/s | worst sentence end s | "
               "after the talk s (range) | heard chrF |", "|---|---|---|---|---|---|---|"]


def median_row(m: dict[str, Any]) -> str:
    spread = m["after_talk_range_s"]
    after = f"{m['after_talk_s']} ({spread[0]}–{spread[1]})" if spread else "–"
    return (f"| {m['pair']} | {m['runs']} | {m['ear_voice_p50_s']} / {m['ear_voice_p90_s']} | "
            f"{m['slope_s_per_s']} | {m['worst_sentence_end_s']} | {after} | "
            f"{m['heard_chrf']} |")


def markdown(results: dict[str, Any]) -> str:
    lines = [f"### babelcall bench --longform — {results['date']}, commit {results['commit']}, "
             f"{results['machine'].get('cpu', '?')}", "", *TABLE_HEAD]
    lines += [talk_row(r) for r in results.get("talks", [])]
    if results.get("medians"):
        lines += ["", "Median of each pair's runs:", "", *MEDIAN_HEAD]
        lines += [median_row(m) for m in results["medians"]]
    if "dialogue" in results:
        d = results["dialogue"]
        lines += ["", f"Dialogue ({d['pair']}, turns alternate, {TURN_GAP_S} s between): "
                  f"each turn's translation heard p50 {d['turn_end_lag_s']['p50']} s / p90 "
                  f"{d['turn_end_lag_s']['p90']} s after the turn ends.", "", *TABLE_HEAD]
        lines += [talk_row(r) for r in d["speakers"]]
    return "\n".join(lines) + "\n"


def lag_plot(results: dict[str, Any], out: Path) -> Path | None:
    """Ear-voice span of every word over the talk, one line per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = list(results.get("talks", []))
    if "dialogue" in results:
        runs += [{**r, "pair": f"dialogue {r['pair']}"} for r in results["dialogue"]["speakers"]]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    for r in runs:
        if r["lag_series"]:
            x, y = zip(*r["lag_series"], strict=True)
            run = f" run {r['run']}" if "run" in r else ""
            ax.plot(x, y, marker=".", linewidth=1,
                    label=f"{r['pair']} ({r['mode'][:4]}){run}")
    ax.axhline(2.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("talk time (s): when the word was said")
    ax.set_ylabel("heard after (s)")
    ax.set_title("Ear-voice span over the talk")
    ax.legend(fontsize=8)
    path = out / "longform_lag.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- entry (babelcall bench --longform / --dialogue) ----------------------------------------


async def run_longform(args: Any, engines: Any) -> dict[str, Any]:
    """``--pair`` may list pairs (``en-es,es-en,en-pt``): one talk each, made of that pair's
    dev clips (``--clips`` of them), each played ``--repeat`` times (the report adds each
    pair's median); ``--dialogue``: also the first pair as a dialogue (once)."""
    import json
    from datetime import UTC, datetime

    from babelcall.benchmarks.pairs import pair_name
    from babelcall.benchmarks.run import find_clips, git_commit, machine_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = [pair_name(p.strip()) for p in args.pair.split(",") if p.strip()]
    for source, target in pairs:
        engines.check_pair(source, target)
    eval_dir = Path(args.eval_dir)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
        "machine": machine_info(args.device), "fast": args.fast, "talks": []}
    repeat = args.repeat
    if not args.dialogue_only:
        for source, target in pairs:
            talk = make_talk(find_clips(eval_dir, source, target, args.clips), source, target,
                             out)
            for k in range(repeat):
                run = await run_talk(engines, talk, fast=args.fast)
                results["talks"].append({**run, "run": k + 1} if repeat > 1 else run)
        if repeat > 1:
            results["medians"] = medians(results["talks"])
    if args.dialogue or args.dialogue_only:
        source, target = pairs[0]
        a, b = make_dialogue(find_clips(eval_dir, source, target, args.clips),
                             find_clips(eval_dir, target, source, args.clips),
                             (source, target), out)
        for t in (a, b):
            engines.check_pair(t.source, t.target)
        results["dialogue"] = {"pair": f"{source}<->{target}",
                               **await run_dialogue(engines, a, b, fast=args.fast)}
    results["markdown"] = markdown(results)
    plot = lag_plot(results, out)
    results["plots"] = [str(plot)] if plot else []
    (out / "longform.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "longform.md").write_text(results["markdown"], encoding="utf-8")
    return results
