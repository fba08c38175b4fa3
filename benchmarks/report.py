"""Turn bench results into a Markdown table and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if isinstance(v, float) and abs(v) >= 10 else str(v)


def _pct(pct: dict[str, Any] | None) -> str:
    """A percentiles dict (measures.percentiles) as one table cell."""
    if not pct or pct.get("p50") is None:
        return "–"
    return f"p50 {_fmt(pct['p50'])} · p90 {_fmt(pct['p90'])} · p95 {_fmt(pct['p95'])}"


def markdown(results: dict[str, Any]) -> str:
    m, s, b = results["machine"], results["streaming"], results["cascade"]
    w = results.get("webrtc")
    cols = [s, w, b] if w is not None else [s, b]
    lines = [
        f"### babelcall bench — {results['pair']}, {results['clips']} clips, "
        f"{results['mode']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB, "
        f"device {m['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}; "
        f"commit {results.get('commit') or '?'}; {results['date']}.",
        f"Models: {', '.join(f'{k}={v}' for k, v in results['models'].items())}.",
        "",
        "| metric | babelcall in-process | " + ("babelcall over WebRTC loopback | "
                                                  if w is not None else "")
        + "offline cascade (dubbing) |",
        "|---" * len(cols) + "|---|",
    ]
    for key, label in (("final_clause_ms", "**final-clause latency** (last word → its clause "
                                           "heard), ms"),
                       ("end_offset_ms", "**EndOffset** (speaker stops → translation ends), ms"),
                       ("first_audio_ms", "end of speech → first audio of the phrase, ms"),
                       ("start_offset_ms", "StartOffset, ms"), ("laal_ms", "LAAL (text), ms")):
        lines.append(f"| {label} | {' | '.join(_pct(agg.get(key)) for agg in cols)} |")
    for key, label in (("wer", "ASR WER"), ("bleu", "BLEU"), ("chrf", "chrF"),
                       ("asr_bleu", "ASR-BLEU (speech heard back)"), ("asr_chrf", "ASR-chrF"),
                       ("speaker_similarity", "speaker similarity")):
        lines.append(f"| {label} | {' | '.join(_fmt(c.get(key)) for c in cols)} |")
    cost = results.get("cost", {})
    rtf = ", ".join(f"{k} {v}" for k, v in cost.get("stage_rtf", {}).items())
    if w is not None:
        lines += ["", "WebRTC loopback: the same clips sent by an aiortc caller to `babelcall "
                      "serve` in this process (Opus both ways), timed at the caller."]
    j = results.get("janus")
    if j is not None or w is not None:
        lines += ["", "| network path | interpreter got the phrase end → listener hears it, "
                      "ms | BLEU / chrF | ASR-BLEU / ASR-chrF |", "|---|---|---|---|"]
        for label, agg in (("direct relay (WebRTC loopback)", w),
                           ("Janus VideoRoom (bot feed → subscriber)", j)):
            if agg is None:
                continue
            lines.append(f"| {label} | {_pct(agg.get('heard_after_ms'))} | "
                         f"{_fmt(agg.get('bleu'))} / "
                         f"{_fmt(agg.get('chrf'))} | {_fmt(agg.get('asr_bleu'))} / "
                         f"{_fmt(agg.get('asr_chrf'))} |")
    lines += waterfall_table(results)
    lines += ["", f"Cost (in-process run): real-time factor per stage {rtf or '–'}; "
              f"CPU {cost.get('cpu_percent', '–')} %; peak RSS {cost.get('peak_rss_mib', '–')} "
              "MiB."]
    lines += cost_table(cost)
    if results.get("sweep"):
        lines += ["", "| concurrent sessions | first audio p50 / p95, ms | max lag, s | "
                      "ASR mean batch |", "|---|---|---|---|"]
        for row in results["sweep"]:
            pct = row["first_audio_ms"]
            lines.append(f"| {row['sessions']} | {_fmt(pct['p50'])} / {_fmt(pct['p95'])} | "
                         f"{row['max_lag_s']} | {row['asr_mean_batch']} |")
        lines.append(f"\nMaximum sessions holding p95 ≤ {results['budget_ms']} ms: "
                     f"**{results.get('max_sessions_within_budget', 0)}**.")
    soak = results.get("soak")
    if soak:
        pct = soak["first_audio_ms"]
        lines += ["", f"Soak: {soak['sessions']} concurrent sessions on a {soak['call_s']} s "
                      f"call: max recognition lag {soak['max_lag_first_half_s']} s in the "
                      f"first half, {soak['max_lag_second_half_s']} s in the second; max "
                      f"speech lag (speaker → listener, voiced clauses) "
                      f"{soak.get('max_speech_lag_first_half_s', '–')} s / "
                      f"{soak.get('max_speech_lag_second_half_s', '–')} s; clauses merged "
                      f"{soak.get('merges', '–')}, captioned but not voiced "
                      f"{soak.get('skipped', '–')}; first audio p50 "
                      f"{_fmt(pct['p50'])} / p95 {_fmt(pct['p95'])} ms; ASR mean batch "
                      f"{soak['asr_mean_batch']}; errors {soak['errors']}."]
        rss = soak.get("rss_mib")
        if rss:
            lines[-1] += (f" Memory (RSS every {_fmt(soak.get('rss_every_s'))} s): "
                          f"{rss[0][1]:.0f} → {max(r for _, r in rss):.0f} MiB at most, "
                          f"{_fmt(soak.get('rss_end_mib'))} MiB once the calls ended; slope "
                          f"while they ran, after the first "
                          f"{soak['rss_warmup_s']:.0f} s "
                          f"{_fmt(soak.get('rss_slope_mib_per_min'))} MiB/min (the "
                          "benchmark keeps no events or audio of the soak: this is the "
                          "server's own memory).")
    text = "\n".join(lines) + "\n"
    if results.get("voice_ablation"):
        from babelcall.benchmarks.ablation import markdown as ablation_markdown

        text += ablation_markdown(results["voice_ablation"])
    return text


STAGES = ("vad", "asr", "mt", "tts", "voice_conversion", "voice_analysis")


def cost_table(cost: dict[str, Any]) -> list[str]:
    """The cost account (realtime/cost.py): CPU-seconds per second of speech per stage, for
    one speaker and for several at once, and the share of the machine that is."""
    account = cost.get("account") or {}
    runs = [(n, a) for n, a in sorted(account.items(), key=lambda kv: int(kv[0]))
            if a.get("cpu_per_audio_s")]
    if not runs:
        return []
    stages = [s for s in STAGES if any(s in a["cpu_per_audio_s"] for _, a in runs)]
    stages += sorted({s for _, a in runs for s in a["cpu_per_audio_s"]} - set(stages))
    lines = ["", f"Cost account on {cost.get('machine', '?')}: CPU-seconds per second of "
                 "speech (each model call's threads and processes, by their CPU clocks):", "",
             "| stage | " + " | ".join(f"{n} speaker{'s' if n != '1' else ''}"
                                       for n, _ in runs) + " |",
             "|---" * (len(runs) + 1) + "|"]
    for stage in stages:
        lines.append(f"| {stage} | " + " | ".join(
            str(a["cpu_per_audio_s"].get(stage, "–")) for _, a in runs) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{a['total_cpu_per_audio_s']}**" for _, a in runs) + " |")
    lines.append("| share of the machine | " + " | ".join(
        f"{100 * a['share_of_machine']:.0f} %" for _, a in runs) + " |")
    if any("speech_made_s" in a for _, a in runs):  # shed work costs nothing: say how much
        lines.append("| speech made, s (of speech heard, s) | " + " | ".join(
            f"{_fmt(a.get('speech_made_s'))} ({_fmt(a.get('audio_s'))})" for _, a in runs)
            + " |")
        lines.append("| clauses only captioned | " + " | ".join(
            _fmt(a.get("skipped")) for _, a in runs) + " |")
    return lines


def waterfall_table(results: dict[str, Any]) -> list[str]:
    """p50 of each hop of the final clause's way to the listener, per path."""
    from babelcall.realtime.waterfall import HOPS

    paths = [(label, results[key].get("waterfall_p50_ms") or {})
             for key, label in (("streaming", "in-process"), ("webrtc", "WebRTC"),
                                ("janus", "Janus")) if results.get(key)]
    paths = [(label, w) for label, w in paths if w]
    if not paths:
        return []
    lines = ["", "Latency waterfall of the clause that carries a phrase's last word, p50 ms "
                 "after that word (each hop's time from `realtime/waterfall.py`):", "",
             "| hop | " + " | ".join(label for label, _ in paths) + " |",
             "|---" * (len(paths) + 1) + "|"]
    for name, what in HOPS:
        if any(name in w for _, w in paths):
            lines.append(f"| {what} | " + " | ".join(_fmt(w.get(name)) for _, w in paths)
                         + " |")
    return lines


def waterfall_plot(results: dict[str, Any], out: Path) -> Path | None:
    """Stacked bars: per phrase, where the time from its last word to hearing its last
    clause went; the last bar of each path is the p50 of every hop."""
    import matplotlib.pyplot as plt

    from babelcall.realtime.waterfall import HOPS, segments

    paths = [(label, results.get(key)) for key, label in
             (("per_clip", "in-process"), ("per_clip_webrtc", "WebRTC"))]
    paths = [(label, [t for c in clips for t in c.get("timings", [])])
             for label, clips in paths if clips]
    paths = [(label, ts) for label, ts in paths if ts]
    if not paths:
        return None
    colors = dict(zip([n for n, _ in HOPS], plt.get_cmap("tab20").colors, strict=False))
    fig, axes = plt.subplots(len(paths), 1, figsize=(9, 2.2 + 1.6 * len(paths)),
                             squeeze=False)
    for ax, (label, ts) in zip(axes[:, 0], paths, strict=True):
        agg = {"hops_ms": results["streaming" if label == "in-process" else "webrtc"]
               .get("waterfall_p50_ms", {})}
        bars = ts + [agg]
        names = [f"{t.get('clip', '')}#{t['utt']}" if "utt" in t else "p50" for t in bars]
        for i, t in enumerate(bars):
            left = 0.0
            for hop, ms in segments(t["hops_ms"]):
                ax.barh(i, ms, left=left, color=colors[hop],
                        label=hop if i == len(bars) - 1 else None)
                left += ms
        ax.set_yticks(range(len(bars)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set(xlabel="ms after the phrase's last word", title=f"Waterfall, {label}")
    axes[0, 0].legend(fontsize=6, ncol=4, loc="lower right")
    return _save(fig, out / "waterfall.png")


def plots(results: dict[str, Any], raw: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    fall = waterfall_plot(results, out)
    if fall is not None:
        written.append(fall)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in (("streaming, in-process", raw["streaming_latencies"]),
                          ("streaming, WebRTC loopback", raw.get("webrtc_latencies", [])),
                          ("offline cascade", raw["cascade_latencies"])):
        if values:
            xs = np.sort(values)
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
    ax.axvline(results["budget_ms"], color="grey", ls="--", lw=1, label="budget")
    ax.set(xlabel="end of speech → first translated audio (ms)", ylabel="fraction of phrases",
           title="First-audio latency CDF")
    ax.legend()
    written.append(_save(fig, out / "latency_cdf.png"))

    if results.get("sweep"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for row in results["sweep"][-1:]:
            for i, lag in enumerate(row["lag"]):
                if lag:
                    ax.plot([t for t, _ in lag], [v for _, v in lag], label=f"session {i + 1}")
        ax.set(xlabel="input time (s)", ylabel="lag behind the speaker (s)",
               title=f"Lag per session ({results['sweep'][-1]['sessions']} concurrent)")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "lag.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        ns = [r["sessions"] for r in results["sweep"]]
        ax.plot(ns, [r["first_audio_ms"]["p95"] for r in results["sweep"]], marker="o")
        ax.axhline(results["budget_ms"], color="grey", ls="--", lw=1)
        ax.set(xlabel="concurrent sessions", ylabel="p95 first audio (ms)", xscale="log",
               title="Sessions vs p95 first-audio latency")
        written.append(_save(fig, out / "sessions_p95.png"))
    if results.get("soak"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, lag in enumerate(results["soak"]["lag"]):
            line, = ax.plot([t for t, _ in lag], [v for _, v in lag],
                            label=f"session {i + 1}: recognition")
            speech = results["soak"].get("speech_lag", [])
            if i < len(speech):
                ax.plot([t for t, _ in speech[i]], [v for _, v in speech[i]], ls="--",
                        color=line.get_color(), label=f"session {i + 1}: voice")
        ax.set(xlabel="call time (s)", ylabel="lag behind the speaker (s)",
               title=f"Soak: {results['soak']['sessions']} concurrent sessions")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "soak_lag.png"))
    if results.get("soak", {}).get("rss_mib"):
        soak = results["soak"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([t for t, _ in soak["rss_mib"]], [r for _, r in soak["rss_mib"]], marker=".")
        ax.axvline(soak["rss_warmup_s"], color="grey", ls="--", lw=1, label="end of warm-up")
        ax.set(xlabel="call time (s)", ylabel="RSS (MiB)",
               title=f"Soak memory: {soak['sessions']} sessions, slope "
                     f"{_fmt(soak.get('rss_slope_mib_per_min'))} MiB/min after warm-up")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "soak_rss.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
