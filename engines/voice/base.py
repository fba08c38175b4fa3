"""The voice-cloning contract. A cloner picks the base TTS voice nearest to a participant's
voice and turns the TTS output into that participant's voice. Like the other engines it is
synchronous, shared by every session, and keeps no per-session state: the per-participant
state is the ``VoiceProfile`` the session's ``ProfileBuilder`` hands out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from babelcall.engines.voice.profile import VoiceProfile


@dataclass(frozen=True)
class VoiceDecision:
    """A cloner's choice for one caller: the base voice (None: the session's default), whether
    its output is converted, and why, in words a log or an event can carry."""

    voice: str | None
    convert: bool
    reason: str


@runtime_checkable
class VoiceCloner(Protocol):
    name: str

    def decide(self, profile: VoiceProfile | None,
               available_voices: Sequence[str]) -> VoiceDecision:
        """The base voice for this caller, whether its output will be converted, and why
        (``reason``: for the session's events, where conversion is off for safety)."""
        ...

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        """The base voice to synthesise with; None (no profile yet) keeps the default."""
        ...

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None) -> np.ndarray:
        """``pcm`` (mono float32 TTS output at ``rate``, synthesised with ``voice``) in the
        profile's voice: same length, within [-1, 1]. With no profile, or where ``decide``
        said not to convert, ``pcm`` unchanged."""
        ...


class PassThrough:
    """Cloning off: the session's own voice, audio untouched."""

    name = "off"

    def decide(self, profile: VoiceProfile | None,
               available_voices: Sequence[str]) -> VoiceDecision:
        return VoiceDecision(None, False, "voice cloning off")

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        return None

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None) -> np.ndarray:
        return pcm
