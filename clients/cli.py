"""``babelcall`` command line: translate a file as a live call would, and manage models."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from babelcall.realtime.errors import BabelcallError


def engine_args(p: argparse.ArgumentParser, *, languages: bool = True) -> None:
    """Options that choose and locate the engines; shared by every command that loads them."""
    if languages:
        p.add_argument("--source", "-s", required=True,
                       help="source language (ISO 639-1, e.g. en)")
        p.add_argument("--target", "-t", required=True, help="target language (e.g. es)")
    p.add_argument("--mt", default="auto",
                   choices=["auto", "apertium", "bergamot", "ctranslate2", "whisper"],
                   help="translation engine (auto: CTranslate2 if --mt-model, else each pair's "
                        "best installed engine: see babelcall languages)")
    p.add_argument("--mt-model", help="CTranslate2 translation model directory or name")
    p.add_argument("--asr-model", default="whisper-base",
                   help="faster-whisper model directory or name (default: whisper-base)")
    p.add_argument("--tts-model", default="kokoro-82m", help="Kokoro model directory or name")
    p.add_argument("--voice", help="TTS voice name (default: chosen from the speaker's voice)")
    p.add_argument("--clone", default="dsp", choices=["off", "dsp", "praat", "openvoice"],
                   help="speak in the caller's voice: dsp (CPU: nearest voice + pitch, "
                        "formant and loudness conversion with the WORLD vocoder; default), "
                        "praat (the same with Praat), openvoice (neural, GPU, --clone-model "
                        "DIR), off (a fixed TTS voice)")
    p.add_argument("--clone-model", help="voice-conversion model directory or name")
    p.add_argument("--models-dir", help="folder of models (default: $BABELCALL_MODELS or "
                                        "~/.cache/babelcall/models)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per model (0: auto)")


def load_engines(args: argparse.Namespace):  # -> Engines
    from babelcall.engines.registry import Engines

    return Engines.load(args.source, args.target, asr_model=args.asr_model, mt=args.mt,
                        mt_model=args.mt_model, tts_model=args.tts_model, voice=args.voice,
                        models_dir=args.models_dir, device=args.device, threads=args.threads,
                        clone=args.clone, clone_model=args.clone_model)


def cmd_translate(args: argparse.Namespace) -> int:
    from babelcall.realtime.audio import write_wav
    from babelcall.realtime.replay import print_progress, replay
    from babelcall.realtime.session import SessionConfig

    if not Path(args.input).is_file():
        raise BabelcallError(f"{args.input}: no such file")
    engines = load_engines(args)
    config = SessionConfig(args.source, args.target, voice=args.voice,
                           clone_voice=args.clone != "off")
    log_file = open(args.events, "w", encoding="utf-8") if args.events else None  # noqa: SIM115

    def on_record(rec: dict) -> None:
        if log_file:
            log_file.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if not args.quiet and rec["type"] == "translation" and rec["committed"]:
            print(f"[{rec['src_end']:7.2f}s] {rec['committed']}", flush=True)

    try:
        result = asyncio.run(replay(engines, config, args.input, fast=args.fast,
                                    on_record=on_record,
                                    progress=None if args.quiet else print_progress))
    finally:
        if log_file:
            log_file.close()
    write_wav(args.output, result.audio, result.rate)
    if not args.quiet:
        spoken = sum(r.get("duration_ms", 0) for r in result.records) / 1000
        print(f"\nwrote {args.output}: {len(result.audio) / result.rate:.1f} s "
              f"({spoken:.1f} s of speech) for {result.input_s:.1f} s of input "
              f"in {result.wall_s:.1f} s", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from babelcall.engines.models import CATALOG, install, models_dir

    names = args.names or sorted(CATALOG)
    if args.action == "list":
        for name in sorted(CATALOG):
            path = models_dir(args.models_dir) / name
            print(f"{name:12s} {'installed' if path.is_dir() else 'missing':9s} {path}")
        return 0
    for name in names:
        print(f"{name}: {install(name, models=args.models_dir)}")
    return 0


# Modules that add subcommands: each has ``register(subparsers)`` that adds its parsers and
# sets ``func`` (args -> exit code). One module per concern keeps this file small.
COMMAND_MODULES: tuple[str, ...] = (
    "babelcall.benchmarks.cli",
    "babelcall.clients.serve_cmd",
    "babelcall.clients.call",
    "babelcall.clients.join_cmd",
    "babelcall.clients.languages_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babelcall", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("translate", help="interpret an audio file, paced as a live call")
    tr.add_argument("input", help="audio file (anything FFmpeg decodes)")
    tr.add_argument("-o", "--output", required=True, help="translated speech (WAV)")
    tr.add_argument("--events", help="write every event as JSON lines here")
    tr.add_argument("--fast", action="store_true",
                    help="as fast as possible on a simulated clock (default: real time)")
    tr.add_argument("-q", "--quiet", action="store_true")
    engine_args(tr)
    tr.set_defaults(func=cmd_translate)

    md = sub.add_parser("models", help="install (assemble) or list the offline models")
    md.add_argument("action", choices=["install", "list"])
    md.add_argument("names", nargs="*")
    md.add_argument("--models-dir")
    md.set_defaults(func=cmd_models)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BabelcallError as exc:
        print(f"babelcall: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
