"""The voice-cloning contract. A cloner picks the base TTS voice nearest to a participant's
voice and turns the TTS output into that participant's voice. Like the other engines it is
synchronous, shared by every session, and keeps no per-session state: the per-participant
state is the ``VoiceProfile`` the session's ``ProfileBuilder`` hands out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from babelcall.engines.voice.profile import VoiceProfile


@runtime_checkable
class VoiceCloner(Protocol):
    name: str

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        """The base voice to synthesise with; None (no profile yet) keeps the default."""
        ...

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None) -> np.ndarray:
        """``pcm`` (mono float32 TTS output at ``rate``, synthesised with ``voice``) in the
        profile's voice: same length, within [-1, 1]. With no profile, ``pcm`` unchanged."""
        ...


class PassThrough:
    """Cloning off: the session's own voice, audio untouched."""

    name = "off"

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        return None

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None) -> np.ndarray:
        return pcm
