"""`babelcall translate` as a user runs it: real models, real clips, and bad inputs."""

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
import sacrebleu
from conftest import clip_path, hear_back, reference

from babelcall.clients.cli import main
from babelcall.realtime.audio import load_file, write_wav


def run_cli(*args):
    return main(["translate", *map(str, args), "-s", "en", "-t", "es", "-q"])


def test_translate_fleurs_clip_in_real_time(tmp_path):
    """The issue's acceptance check, paced in real time as by default."""
    out, log = tmp_path / "x.wav", tmp_path / "events.jsonl"
    assert run_cli(clip_path("fleurs-en-000"), "-o", out, "--events", log) == 0
    heard = hear_back(load_file(out, 16000), "es")
    ref = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    assert sacrebleu.sentence_chrf(heard, [ref]).score > 35, heard
    records = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = {r["type"] for r in records}
    assert {"speech_started", "transcript", "translation", "synth_audio",
            "speech_ended"} <= kinds
    audio = [r for r in records if r["type"] == "synth_audio"]
    assert all(r["play_latency_ms"] >= 0 for r in audio)
    with wave.open(str(out)) as w:  # speech on the input's timeline, silence elsewhere
        assert w.getnframes() / w.getframerate() >= 10.5


def test_empty_file_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert run_cli(empty, "-o", tmp_path / "o.wav", "--fast") == 2
    assert "not a readable audio file" in capsys.readouterr().err


def test_non_audio_file_is_a_clear_error(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 100)
    assert run_cli(text, "-o", tmp_path / "o.wav", "--fast") == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert run_cli(tmp_path / "nope.ogg", "-o", tmp_path / "o.wav") == 2
    assert "no such file" in capsys.readouterr().err


def test_8khz_stereo_input_is_translated(tmp_path):
    mono = load_file(clip_path("fleurs-en-000"), 8000)
    stereo = (np.stack([mono, mono * 0.8], axis=1) * 32767).astype("<i2")
    src = tmp_path / "phone.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())
    out = tmp_path / "o.wav"
    assert run_cli(src, "-o", out, "--fast") == 0
    heard = hear_back(load_file(out, 16000), "es")
    ref = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    assert sacrebleu.sentence_chrf(heard, [ref]).score > 30, heard


def test_five_minutes_of_silence_give_silence(tmp_path):
    src, out, log = tmp_path / "silence.wav", tmp_path / "o.wav", tmp_path / "e.jsonl"
    write_wav(src, np.zeros(16000 * 300, dtype=np.float32), 16000)
    assert run_cli(src, "-o", out, "--events", log, "--fast") == 0
    assert log.read_text() == ""
    result = load_file(out, 16000)
    assert abs(len(result) / 16000 - 300) < 1 and np.abs(result).max() == 0


def test_clipped_noise_does_not_crash_or_hang(tmp_path):
    rng = np.random.default_rng(7)
    noise = np.clip(rng.standard_normal(16000 * 20) * 2.0, -1, 1).astype(np.float32)
    src, out = tmp_path / "noise.wav", tmp_path / "o.wav"
    write_wav(src, noise, 16000)
    assert run_cli(src, "-o", out, "--fast") == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("args,needle", [
    (["--mt", "whisper"], "only into English"),
    (["--asr-model", "/does/not/exist"], "does not exist"),
    (["--mt-model", "/does/not/exist"], "does not exist"),
])
def test_bad_options_are_clear_errors(tmp_path, capsys, args, needle):
    code = main(["translate", str(clip_path("fleurs-en-000")), "-o", str(tmp_path / "o.wav"),
                 "-s", "en", "-t", "es", "-q", *args])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "babelcall.clients.cli", "models", "list"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "whisper-base" in proc.stdout
