"""The arrival index: stream position (integer samples) -> wall time, bounded."""

from babelcall.realtime.arrivals import ArrivalIndex


def test_lookups_find_the_block_a_sample_arrived_in():
    idx = ArrivalIndex(16000)
    assert idx.wall_ns(0) is None
    idx.add(320, 20_000_000)
    idx.add(320, 40_000_000)
    assert idx.wall_ns(1) == 20_000_000
    assert idx.wall_ns(320) == 20_000_000
    assert idx.wall_ns(321) == 40_000_000
    assert idx.wall_ns(10**9) == 40_000_000  # beyond the end: the latest arrival
    assert idx.wall_ns_at(0.03) == 40_000_000
    assert idx.heard_s == 0.04
    idx.add(0, 99)  # nothing arrived: nothing recorded
    assert len(idx) == 2


def test_it_stays_bounded_on_long_calls():
    idx = ArrivalIndex(16000, keep=100)
    for i in range(1000):
        idx.add(320, (i + 1) * 20_000_000)
    assert len(idx) <= 200
    assert idx.wall_ns(1000 * 320) == 1000 * 20_000_000
    assert idx.wall_ns(0) == idx._marks[0][1]  # older than kept: the oldest kept arrival
    assert idx.heard_s == 20.0
