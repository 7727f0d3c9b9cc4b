"""DecimatedSeries (sans-I/O): what a view rebuilt from its messages holds equals ``shown()``.

The view is the front end's own ``ChartSeries`` (``js/src/live_chart.js``) run under Node.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.series import DecimatedSeries, choose_stride
from tests._support.js_chart import ViewSeries, floats


def step(series: DecimatedSeries, view: ViewSeries, samples: list[tuple[float, float]]) -> str:
    series.add(samples, window=1000.0)
    content, buffers = series.next_message()
    outcome = view.apply(content, buffers)
    x, y = series.shown()
    assert view.shown() == (floats(x), floats(y))
    assert view.shown()[0] == sorted(view.shown()[0])
    assert len(view.shown()[0]) <= series.max_points
    return outcome


def test_a_steady_stream_sends_one_window_then_appends() -> None:
    series, view = DecimatedSeries(max_points=50), ViewSeries()
    outcomes = [step(series, view, [(float(t), float(t))]) for t in range(30)]
    assert outcomes == ["window"] + ["append"] * 29
    assert series.windows_sent == 1 and series.stride == 1


def test_stride_change_late_sample_and_request_send_a_window() -> None:
    series, view = DecimatedSeries(max_points=10), ViewSeries()
    step(series, view, [(float(t), 0.0) for t in range(8)])
    assert step(series, view, [(float(t), 0.0) for t in range(8, 40)]) == "window"  # stride grew
    assert series.stride > 1
    assert step(series, view, [(40.0, 1.0)]) == "append"
    assert step(series, view, [(3.5, 9.0)]) == "window"  # inserted among samples already sent
    series.want_window()
    assert step(series, view, [(41.0, 1.0)]) == "window"


def test_bad_max_points_is_refused() -> None:
    with pytest.raises(ValueError, match="max_points"):
        DecimatedSeries(max_points=1)
    with pytest.raises(ValueError, match="cap"):
        choose_stride(1, 10, 0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 5000), st.floats(-1e6, 1e6)), max_size=40),
        min_size=1,
        max_size=25,
    ),
    st.integers(2, 60),
)
def test_property_view_always_equals_shown(batches: list[list[tuple[float, float]]], max_points: int) -> None:
    series, view = DecimatedSeries(max_points=max_points), ViewSeries()
    for batch in batches:
        assert step(series, view, batch) in ("window", "append")
