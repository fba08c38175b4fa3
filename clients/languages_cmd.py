"""``babelcall languages``: the language pairs this install can serve, the engine of each stage
and each pair's measured quality (the same list as the server's ``GET /languages``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_languages(args: argparse.Namespace) -> int:
    from babelcall.engines.languages import candidate_languages, markdown_table, pair_table
    from babelcall.engines.registry import Engines

    engines = Engines.open(asr_model=args.asr_model, mt=args.mt, mt_model=args.mt_model,
                           tts_model=args.tts_model, models_dir=args.models_dir, clone="off")
    rows = pair_table(engines, candidate_languages(engines, everything=args.all))
    if args.json:
        langs = sorted({r.source for r in rows} | {r.target for r in rows})
        print(json.dumps({"languages": langs, "pairs": [r.as_dict() for r in rows]},
                         indent=1, ensure_ascii=False))
        return 0
    print(markdown_table(rows), end="")
    if not args.all:
        print("\nAny other language Whisper knows can be spoken to an English listener "
              "(whisper-translate, not measured): babelcall languages --all")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("languages", help="the language pairs this install serves, with their "
                                         "engines and measured quality")
    p.add_argument("--json", action="store_true", help="print JSON (as GET /languages)")
    p.add_argument("--all", action="store_true",
                   help="also every other language Whisper translates into English")
    p.add_argument("--mt", default="auto", choices=["auto", "apertium", "bergamot", "whisper"],
                   help="list what this MT choice serves (default: auto, everything)")
    p.add_argument("--mt-model", help="a CTranslate2 translation model directory or name")
    p.add_argument("--asr-model", default="whisper-base")
    p.add_argument("--tts-model", default="kokoro-82m")
    p.add_argument("--models-dir")
    p.set_defaults(func=cmd_languages)
