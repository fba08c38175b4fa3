"""What ``babelcall bench --room`` writes (room.md): the table per listener and speaker, each
speaker's recogniser streams, the model lanes' busy time, the turns and the transcripts. Kept
apart from ``room.py`` (the room and its scoring) because it only renders a results dict."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def uncommitted() -> list[str]:
    """Tracked files changed in the working tree the bench ran from: the commit alone does not
    say what ran when others edit the same tree."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "-uno"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def _s(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f}"


def _verdict(cell: dict[str, Any]) -> str:
    """yes/no, and the nearest other text's chrF: how clear the call was."""
    if cell["right"] is None:
        return "–"
    near = "" if cell["nearest_other"] is None else f" (next {cell['other_chrf']})"
    return ("yes" if cell["right"] else f"**no**, nearer {cell['nearest_other']}") + near


def markdown(r: dict[str, Any]) -> str:
    lines = [f"### babelcall bench --room — {', '.join(r['langs'])}, one speaker each, "
             "taking turns", "",
             f"{r['cpu']}, {r['cores']} cores; {r['date']}, commit {r['commit']}"
             + (f" (+ uncommitted {', '.join(r['uncommitted'])})" if r.get("uncommitted") else "")
             + "; "
             f"`{r['command']}`; voice cloning {r.get('clone')}. Clips: " + ", ".join(
                 f"{k} {v} ({r['speech_s'][k]} s)" for k, v in r["clips"].items()) + ".", "",
             "| listener ← speaker | heard chrF (ref) | right speaker (ref) | heard vs said "
             "chrF | right speaker (said) | first sound after start / end (s) | end offset (s) "
             "| caption-only |", "|---|---|---|---|---|---|---|---|"]
    mt = r.get("mt", {})
    for c in r["cells"]:
        ref, route = c["reference"], mt.get(c["speaker"] + "->" + c["listener"], "?")
        lines.append(
            f"| {c['listener']} ← {c['speaker']} ({route}) | "
            f"{'no reference' if ref['chrf'] is None else ref['chrf']} | {_verdict(ref)} | "
            f"{c['round_trip']['chrf']} | {_verdict(c['round_trip'])} | "
            f"{_s(c['first_after_start_ms'])} / {_s(c['first_after_end_ms'])} | "
            f"{_s(c['end_offset_ms'])} | {c['caption_only']} |")
    lines += ["", "| speaker | recogniser streams | ASR passes | branches (listeners) |",
              "|---|---|---|---|"]
    for lang, rec in r["recognition"].items():
        passes = ", ".join(f"{k} {v}" for k, v in rec["asr_passes"].items())
        lines.append(f"| {lang} | {rec['streams']} | {passes} | {rec['branches']} |")
    lines += ["", f"Model lanes busy over the {r.get('turns_s')} s of turns: " + ", ".join(
        f"{k} {v} s" for k, v in r.get("busy_s", {}).items()) + "."]
    lines += ["", "Turns: " + "; ".join(
        f"{t['speaker']} heard to its end {t['wait_s']} s after the speech"
        if t["heard_to_end"] else f"{t['speaker']} NOT heard to its end within the cap"
        for t in r["turns"]), ""]
    lines += [f"- {c['listener']} ← {c['speaker']}: said “{c['said']}” — heard “{c['heard']}”"
              for c in r["cells"]]
    return "\n".join(lines) + "\n"
