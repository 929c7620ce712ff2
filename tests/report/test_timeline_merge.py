"""The timeline of a large sweep is drawn from merged bars: nothing a bar
covered is lost, and nothing is drawn that no bar covered (beyond the gap)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runner.report.timeplots import merge_bars

bar = st.tuples(
    st.sampled_from(["w0", "w1", "w2"]),
    st.floats(0, 100),
    st.floats(0, 5),
    st.sampled_from(["ok", "error", "timeout"]),
).map(lambda b: (b[0], b[1], b[1] + b[2], b[3]))


@given(bars=st.lists(bar, min_size=1, max_size=200), gap=st.floats(0, 2))
def test_merged_bars_cover_exactly_the_bars_up_to_the_gap(bars, gap) -> None:
    merged = merge_bars(bars, gap)
    for worker, start, end, status in bars:  # every bar inside one merged bar of its row and status
        assert any(w == worker and s == status and lo <= start and end <= hi for w, lo, hi, s in merged)
    for w, lo, hi, s in merged:  # each merged bar starts and ends at a bar's edge
        mine = [(a, b) for ww, a, b, ss in bars if ww == w and ss == s and lo <= a and b <= hi]
        assert min(a for a, _ in mine) == lo and max(b for _, b in mine) == hi
        mine.sort()
        reach = mine[0][1]
        for a, b in mine[1:]:  # and bridges no hole wider than the gap
            assert a <= reach + gap + 1e-9
            reach = max(reach, b)
    order = [s for *_, s in merged]
    assert order == sorted(order, key=["ok", "cached", "error", "timeout"].index)


def test_a_hundred_thousand_back_to_back_bars_become_a_few() -> None:
    bars = [(f"w{i % 2}", i * 0.001, i * 0.001 + 0.0019, "ok") for i in range(100_000)]
    bars[500] = ("w0", 0.5, 0.501, "error")
    merged = merge_bars(bars, 100 / 2000)
    assert len(merged) == 3 and merged[-1] == ("w0", 0.5, 0.501, "error")
