"""Audio in any shape -> 16 kHz (or any rate) mono float32, with clear errors.

PyAV's AudioResampler does the rate/layout/format conversion for both files and live frames,
so a 8 kHz stereo call and a 48 kHz Opus track take the same path."""

from __future__ import annotations

import os
from collections.abc import Iterator

import av
import numpy as np

from babelcall.realtime.errors import BadAudio

SPEECH_RATE = 16000  # what the listening side works at: VAD, ASR, voice profile, arrivals


class Resampler:
    """Streaming converter of av.AudioFrame (any rate/layout/format) to mono float32."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        return _concat(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return _concat(self._resampler.resample(None))


def _concat(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


def shorten_pauses(pcm: np.ndarray, rate: int, max_pause_s: float = 0.2,
                   threshold: float = 0.01, frame_s: float = 0.01) -> np.ndarray:
    """Cut every quiet stretch (10 ms frames under ``threshold`` RMS) longer than
    ``max_pause_s`` down to that length, keeping its middle out: synthesised speech pauses
    at commas for longer than a listener who is behind can afford, and a shorter pause
    costs no intelligibility (unlike a faster voice)."""
    n = max(1, int(rate * frame_s))
    frames = len(pcm) // n
    if frames == 0:
        return pcm
    rms = np.sqrt(np.mean(pcm[: frames * n].reshape(frames, n) ** 2, axis=1))
    keep_frames = max(1, int(max_pause_s / frame_s))
    keep = np.ones(len(pcm), dtype=bool)
    i = 0
    while i < frames:
        if rms[i] >= threshold:
            i += 1
            continue
        j = i
        while j < frames and rms[j] < threshold:
            j += 1
        if j - i > keep_frames:  # drop the middle: both edges keep their fade
            half = keep_frames // 2
            keep[(i + half) * n:(j - (keep_frames - half)) * n] = False
        i = j
    return pcm[keep] if not keep.all() else pcm


def frame_from_array(pcm: np.ndarray, rate: int, *, channels: int = 1) -> av.AudioFrame:
    """Wrap PCM (float32 in [-1, 1] or int16; shape (n,) or (n, channels)) as an av frame."""
    if rate <= 0:
        raise BadAudio(f"sample rate must be positive, got {rate}")
    arr = np.asarray(pcm)
    if arr.ndim == 1:
        arr = arr.reshape(-1, channels) if channels > 1 else arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != channels:
        raise BadAudio(f"expected PCM of shape (n,) or (n, {channels}), got {arr.shape}")
    if channels not in (1, 2):
        raise BadAudio(f"only mono or stereo input is supported, got {channels} channels")
    if arr.dtype == np.int16:
        fmt, data = "s16", arr
    else:
        fmt, data = "flt", np.clip(arr.astype(np.float32), -1.0, 1.0)
    packed = np.ascontiguousarray(data).reshape(1, -1)
    layout = "mono" if channels == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(packed, format=fmt, layout=layout)
    frame.sample_rate = rate
    return frame


def iter_file(path: str | os.PathLike[str], rate: int) -> Iterator[np.ndarray]:
    """Decode an audio file lazily into mono float32 blocks at ``rate``."""
    if not os.path.isfile(path):
        raise BadAudio(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError) as exc:
        raise BadAudio(f"{path}: not a readable audio file ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise BadAudio(f"{path}: the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = Resampler(rate)
        try:
            for frame in container.decode(stream):
                block = resampler.push(frame)
                if len(block):
                    yield block
        except av.error.FFmpegError as exc:
            raise BadAudio(f"{path}: audio is corrupt ({exc})") from exc
        tail = resampler.flush()
        if len(tail):
            yield tail


def load_file(path: str | os.PathLike[str], rate: int = SPEECH_RATE) -> np.ndarray:
    blocks = list(iter_file(path, rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, rate: int) -> None:
    """16-bit PCM WAV, the format every player and test tool reads."""
    import wave

    data = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
