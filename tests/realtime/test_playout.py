"""The playout rule: a chunk plays when it is ready or when the previous one ends."""

import numpy as np
import pytest

from babelcall.realtime.playout import Playout, PlayoutClock
from babelcall.realtime.types import Span, SynthAudio


def chunk(wall_ns, seconds, rate=1000, level=0.5):
    return SynthAudio(0, Span(0, 1), wall_ns, np.full(int(seconds * rate), level, np.float32),
                      rate, "x")


def test_chunks_queue_behind_each_other_and_gaps_stay_silent():
    clock = PlayoutClock()
    assert clock.backlog_s(0) == 0.0
    assert clock.place(1_000_000_000, 2.0) == 1_000_000_000
    assert clock.place(2_000_000_000, 1.0) == 3_000_000_000  # waits for the first to end
    assert clock.backlog_s(2_500_000_000) == pytest.approx(1.5)
    assert clock.place(10_000_000_000, 1.0) == 10_000_000_000  # ready after a silence
    assert clock.backlog_s(20_000_000_000) == 0.0


def test_playout_renders_the_listeners_timeline():
    p = Playout(1000)
    first = p.add(chunk(1_000_000_000, 0.5))
    second = p.add(chunk(1_200_000_000, 0.5, level=0.25))
    assert (first.start_ns, second.start_ns) == (1_000_000_000, 1_500_000_000)
    out = p.render(0, min_duration_s=3.0)
    assert len(out) >= 3000
    assert out[999] == 0 and out[1000] == 0.5 and out[1499] == 0.5 and out[1500] == 0.25
    assert not out[2001:].any()


def test_a_chunk_at_another_rate_is_refused():
    with pytest.raises(ValueError, match="Hz"):
        Playout(24000).add(chunk(0, 0.1, rate=16000))
