"""The span bookkeeping behind the engine's free-range search (emulator/backends/speakeasy/spans.py),
checked against a plain set of addresses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulator.backends.speakeasy.spans import SpanSet

operations = st.lists(
    st.tuples(st.booleans(), st.integers(0, 200), st.integers(1, 40)),
    max_size=40,
)


@given(operations)
def test_spans_cover_exactly_what_was_mapped(ops: list[tuple[bool, int, int]]) -> None:
    spans = SpanSet()
    model: set[int] = set()
    for add, start, length in ops:
        if add:
            spans.add(start, start + length)
            model |= set(range(start, start + length))
        else:
            spans.remove(start, start + length)
            model -= set(range(start, start + length))
    covered = {a for begin, end in spans.spans for a in range(begin, end)}
    assert covered == model
    assert spans.spans == sorted(spans.spans)
    assert all(end < nxt for (_, end), (nxt, _) in zip(spans.spans, spans.spans[1:], strict=False))
