"""``babelcall bench --pair X-Y --fast`` for a pair without references (pt-en: a round trip) on
one real clip, and the pure scoring rules (lowercase references, clip selection)."""

import asyncio
import json

import pytest
from conftest import eval_dir

from babelcall.benchmarks import run as R
from babelcall.benchmarks.pairs import lowercase_refs, pair_name, scores, tts_texts
from babelcall.clients.cli import build_parser
from babelcall.realtime.errors import BabelcallError


def test_lowercase_references_get_normalised_hypotheses():
    refs = ["ma la lentezza delle vie di comunicazione"]  # FLEURS en-it style
    assert lowercase_refs(refs) and not lowercase_refs(["Contudo, devido a canais."])
    hyp = ["Ma la lentezza, delle vie di comunicazione."]
    assert scores(hyp, refs)[1] == pytest.approx(100.0)
    assert scores(hyp, ["Ma la lentezza, delle vie di comunicazione."])[1] == \
        pytest.approx(100.0)


def test_pairs_without_references_take_the_source_clips():
    clips = R.find_clips(eval_dir(), "pt", "en", None)
    assert [c.name for c in clips] == [f"fleurs-pt-00{i}" for i in range(5)]
    assert all(c.tgt_ref == "" and c.transcript for c in clips)
    assert len(R.find_clips(eval_dir(), "en", "it", None)) == 4  # en-it covers 4 clips
    with pytest.raises(BabelcallError, match="no references and no xx clips"):
        R.find_clips(eval_dir(), "xx", "en", None)
    assert pair_name("en-pt") == ("en", "pt")
    with pytest.raises(BabelcallError, match="--pair"):
        pair_name("english-pt")
    assert len(tts_texts(eval_dir(), "it")) == 4 and len(tts_texts(eval_dir(), "en")) == 5


@pytest.mark.slow
def test_fast_bench_of_a_round_trip_pair(all_pairs, tmp_path):
    args = build_parser().parse_args(["bench", "--fast", "--smoke", "--pair", "pt-en",
                                      "--clone", "off", "--out", str(tmp_path),
                                      "--eval-dir", str(eval_dir())])
    from babelcall.benchmarks.cli import run_bench

    results = asyncio.run(run_bench(args, engines=all_pairs))
    saved = json.loads((tmp_path / "results.json").read_text())
    figures = saved["figures"]
    assert figures["mt"] == "bergamot" and figures["round_trip"] is True
    assert figures["text_chrf"] is None  # nothing to score the text against
    assert figures["heard_chrf"] > 50  # what was heard vs what was committed
    assert 0 <= figures["asr_wer"] < 0.5 and 0 <= saved["tts"]["en"]["wer"] < 0.3
    [clip] = saved["per_clip"]
    assert clip["clip"] == "fleurs-pt-000" and "tragic incident" in clip["target"]
    assert "round trip" in results["markdown"]
