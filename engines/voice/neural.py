"""Zero-shot neural voice conversion for GPU machines: OpenVoice V2's tone-colour converter
turns the Kokoro output into the caller's timbre, from the caller's own first seconds of
speech (``VoiceProfile.reference``).

The weights are not on PyPI, so the converter loads like any user-supplied model: a
directory (or a name under the models folder, ``--models-dir`` / ``$BABELCALL_MODELS``)
holding OpenVoice V2's ``converter/config.json`` and ``converter/checkpoint.pth``. Its
runtime (torch with CUDA, and the ``openvoice`` package from OpenVoice's repository) is an
optional install. Until both are there, loading fails with ModelNotFound or
EngineUnavailable saying what to install and where to put it."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from babelcall.engines.models import ENV_VAR, resolve
from babelcall.engines.models import models_dir as default_models_dir
from babelcall.engines.voice.base import VoiceDecision
from babelcall.engines.voice.dsp import DspCloner
from babelcall.engines.voice.profile import VoiceProfile
from babelcall.engines.voice.sigproc import limit, resample
from babelcall.realtime.errors import EngineUnavailable, ModelNotFound

DEFAULT_MODEL = "openvoice-v2"
REQUIRED = ("config.json", "checkpoint.pth")
INSTALL_HINT = ("its runtime is torch (a CUDA build on the GPU machine) and the openvoice "
                "package (pip install -e <checkout of myshell-ai/OpenVoice>)")


class OpenVoiceConverter:
    """``VoiceCloner`` backed by OpenVoice V2 (tone-colour conversion, 22.05 kHz)."""

    name = "openvoice"

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cuda",
                 models_dir: str | os.PathLike[str] | None = None, tau: float = 0.3) -> None:
        self.path = find_model(model, models_dir)
        if importlib.util.find_spec("openvoice") is None:  # before torch's slow import
            raise EngineUnavailable(f"OpenVoice converter: the openvoice package is missing; "
                                    f"{INSTALL_HINT}")
        try:
            import torch
            from openvoice.api import ToneColorConverter
            from openvoice.mel_processing import spectrogram_torch
        except ImportError as exc:
            raise EngineUnavailable(f"OpenVoice converter: {exc.name or exc} is missing; "
                                    f"{INSTALL_HINT}") from exc
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable("OpenVoice converter: no CUDA device (pass device='cpu' "
                                    "to run it on the CPU, slowly)")
        self._torch = torch
        self._spectrogram = spectrogram_torch
        try:
            self._converter = ToneColorConverter(str(self.path / "config.json"), device=device,
                                                 enable_watermark=False)
            self._converter.load_ckpt(str(self.path / "checkpoint.pth"))
        except Exception as exc:  # torch.load / config errors
            raise ModelNotFound(f"could not load the OpenVoice converter in {self.path}: "
                                f"{exc}") from exc
        self.sample_rate = int(self._converter.hps.data.sampling_rate)
        self.device = device
        self.tau = tau
        self._voice_choice = DspCloner()
        self._embeddings: dict[object, tuple[object, object]] = {}
        self._lock = threading.Lock()

    def decide(self, profile: VoiceProfile | None,
               available_voices: Sequence[str]) -> VoiceDecision:
        """The nearest base voice by pitch, as the DSP cloner picks it (the converter changes
        the timbre, the base voice still sets the pitch range), always converted once the
        caller's reference speech is there."""
        if profile is None or profile.reference is None:
            return VoiceDecision(None, False, "no reference speech yet")
        voice = self._voice_choice.nearest_voice(profile, available_voices)
        return VoiceDecision(voice, True, "converted by OpenVoice V2")

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        return self.decide(profile, available_voices).voice

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None) -> np.ndarray:
        if profile is None or profile.reference is None or len(pcm) == 0:
            return pcm
        torch = self._torch
        target = self._tone_colour(("profile", id(profile)), profile, profile.reference, 16000)
        source = self._tone_colour(("voice", voice), voice, pcm, rate) if voice else \
            self._embed(pcm, rate)
        audio = resample(np.asarray(pcm, np.float32), round(len(pcm) * self.sample_rate / rate))
        hps = self._converter.hps
        with torch.no_grad():
            y = torch.from_numpy(audio).to(self.device).unsqueeze(0)
            spec = self._spectrogram(y, hps.data.filter_length, hps.data.sampling_rate,
                                     hps.data.hop_length, hps.data.win_length, center=False)
            lengths = torch.LongTensor([spec.size(-1)]).to(self.device)
            out = self._converter.model.voice_conversion(spec, lengths, sid_src=source,
                                                         sid_tgt=target, tau=self.tau)[0]
        wav = out[0, 0].float().cpu().numpy()
        wav = resample(wav, len(pcm)) if len(wav) else np.zeros(len(pcm), np.float32)
        return limit(wav)

    def _tone_colour(self, key: tuple[str, object], owner: object, pcm: np.ndarray,
                     rate: int) -> object:
        """Cached embedding: per profile object (the caller) or per voice name (the base)."""
        with self._lock:
            hit = self._embeddings.get(key)
            if hit is not None and (hit[0] is owner or isinstance(owner, str)):
                return hit[1]
        se = self._embed(pcm, rate)
        with self._lock:
            self._embeddings[key] = (owner, se)
            while len(self._embeddings) > 256:
                self._embeddings.pop(next(iter(self._embeddings)))
        return se

    def _embed(self, pcm: np.ndarray, rate: int) -> object:
        """OpenVoice's tone-colour embedding of speech (its reference encoder)."""
        torch, hps = self._torch, self._converter.hps
        audio = resample(np.asarray(pcm, np.float32), round(len(pcm) * self.sample_rate / rate))
        with torch.no_grad():
            y = torch.from_numpy(audio).to(self.device).unsqueeze(0)
            spec = self._spectrogram(y, hps.data.filter_length, hps.data.sampling_rate,
                                     hps.data.hop_length, hps.data.win_length, center=False)
            return self._converter.model.ref_enc(spec.transpose(1, 2)).unsqueeze(-1)


def find_model(model: str, models: str | os.PathLike[str] | None = None) -> Path:
    """The converter's directory, or ModelNotFound naming what to put where."""
    try:
        return resolve(model, required=REQUIRED, models=models)
    except ModelNotFound as exc:
        path = Path(model).expanduser()
        where = path if path.is_dir() or os.sep in model or model.startswith(("~", ".")) \
            else default_models_dir(models) / model
        detail = f" ({exc})" if where.is_dir() else ""
        raise ModelNotFound(
            f"OpenVoice V2 converter '{model}' not found{detail}: put the files of OpenVoice "
            f"V2's checkpoints_v2/converter folder ({', '.join(REQUIRED)}) in {where} (the "
            f"models folder is set by --models-dir or ${ENV_VAR}), or pass that folder's "
            f"path; {INSTALL_HINT}. Without it, the embedded CPU cloner (dsp) works.") from exc
