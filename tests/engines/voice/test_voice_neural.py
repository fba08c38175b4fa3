"""The neural (GPU) cloner's loading path. Its weights are not installable here, so this
checks exactly what a user meets without them: clear errors naming what to install and where;
there is no inference to test without the model."""

from __future__ import annotations

import importlib.util

import pytest

from babelcall.engines.voice import load_cloner
from babelcall.engines.voice.neural import REQUIRED, OpenVoiceConverter
from babelcall.realtime.errors import EngineUnavailable, ModelNotFound


def test_missing_model_names_the_files_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BABELCALL_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFound) as err:
        OpenVoiceConverter()
    text = str(err.value)
    assert "OpenVoice V2" in text and "config.json" in text and "checkpoint.pth" in text
    assert str(tmp_path / "openvoice-v2") in text
    assert "openvoice" in text and "torch" in text  # what to install
    with pytest.raises(ModelNotFound, match="openvoice-v2"):
        load_cloner("openvoice", models_dir=tmp_path)


def test_incomplete_directory_says_what_it_lacks(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="lacks checkpoint.pth"):
        OpenVoiceConverter(str(tmp_path))


def test_missing_directory_path(tmp_path):
    with pytest.raises(ModelNotFound, match="not found"):
        OpenVoiceConverter(str(tmp_path / "nowhere"))


@pytest.mark.skipif(importlib.util.find_spec("openvoice") is not None,
                    reason="the OpenVoice runtime is installed here")
def test_model_present_but_runtime_missing(tmp_path):
    for name in REQUIRED:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(EngineUnavailable, match="openvoice|torch"):
        OpenVoiceConverter(str(tmp_path), device="cpu")
