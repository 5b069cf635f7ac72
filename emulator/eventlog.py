"""The events of one replay, held compactly: API calls as shared tuples, everything else as models.

A replay of a million API calls would hold a million pydantic :class:`~emulator.events.ApiCall`
objects (about a kilobyte each) if it kept them as models. :class:`EventLog` keeps each API call
as one tuple ``(stage, pc, api, args, ret)`` (identical calls share one tuple: a loop that calls
the same API from the same place with the same arguments costs one list slot per call) and
every other event as its model. It is a ``Sequence[Event]``: indexing or iterating gives models
(an :class:`ApiCall` is built when asked for), so code written for a list of events works
unchanged; the functions below (:func:`of_type`, :func:`api_calls_where`, :func:`stage_bounds`,
:func:`stage_lookup`) give the analysis what it needs without building a model per call, and
accept a plain list as well.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from emulator.events import MAX_WORD, ApiCall, Event

# Distinct API-call tuples remembered for sharing; past this, new distinct calls are stored
# unshared (memory per call grows, nothing else changes).
MAX_SHARED_CALLS = 1 << 16
# Short argument and return strings shared between calls (handles, sizes, flags repeat a lot).
MAX_SHARED_STRINGS = 1 << 16
SHARED_STRING_CHARS = 32
# Texts a writer remembers per distinct call (cleared when full): repeats are written from it.
MAX_TEXT_CACHE = 1024
# A run of identical calls is written this many lines at a time.
LINES_PER_PIECE = 4096

ApiTuple = tuple[str, int | None, str, tuple[str, ...], str | None]


def api_fields_typed(stage: Any, pc: Any, api: Any, args: Any, ret: Any) -> bool:
    """Whether an API call's fields, as they came from outside (the emulation child, a
    trace.jsonl line), have exactly the types an :class:`ApiCall` holds."""
    return (
        type(stage) is str
        and (pc is None or (type(pc) is int and 0 <= pc <= MAX_WORD))
        and type(api) is str
        and type(args) is list
        and all(type(a) is str for a in args)
        and (ret is None or type(ret) is str)
    )


def make_api_call(seq: int, call: ApiTuple) -> ApiCall:
    stage, pc, api, args, ret = call
    return ApiCall.model_construct(seq=seq, stage=stage, pc=pc, api=api, args=list(args), ret=ret)


class EventLog(Sequence[Event]):
    """Events in ``seq`` order; ``seq`` is the position (a recorder and :func:`read_trace` make it so).

    With ``keep=False`` (the emulation child, which streams every event to its parent) only the
    count is kept.
    """

    __slots__ = ("_items", "_others", "_shared", "_strings", "_bounds", "_by_api", "_count", "_keep")

    def __init__(self, events: Iterable[Event] = (), *, keep: bool = True) -> None:
        self._items: list[Any] = []  # an ApiTuple, or the model of any other event
        self._others: list[int] = []  # positions of the events that are not API calls
        self._shared: dict[ApiTuple, ApiTuple] = {}
        self._strings: dict[str, str] = {}
        self._bounds: dict[str, list[int]] = {}  # stage -> [first seq, last seq]
        self._by_api: dict[str, array[int]] = {}  # api -> positions of its calls (8 bytes a call)
        self._count = 0
        self._keep = keep
        for event in events:
            self.append(event)

    # ---- adding -----------------------------------------------------------------------------

    def append_api(self, stage: str, pc: int | None, api: str, args: Sequence[str], ret: str | None) -> int:
        """Record an API call; returns its position (its seq)."""
        seq = self._count
        self._count += 1
        bound = self._bounds.get(stage)  # _bound, inline
        if bound is None:
            self._bounds[stage] = [seq, seq]
        else:
            bound[1] = seq
        if self._keep:
            call: ApiTuple = (stage, pc, api, tuple(args), ret)
            shared = self._shared.get(call)
            if shared is None:
                strings = self._strings
                if len(strings) >= MAX_SHARED_STRINGS:
                    strings.clear()
                for text in (stage, api, *args, ret):
                    if text is not None and len(text) <= SHARED_STRING_CHARS:
                        strings.setdefault(text, text)
                call = (
                    strings.get(stage, stage),
                    pc,
                    strings.get(api, api),
                    tuple(strings.get(a, a) for a in args),
                    None if ret is None else strings.get(ret, ret),
                )
                if len(self._shared) < MAX_SHARED_CALLS:
                    self._shared[call] = call
                shared = call
            self._items.append(shared)
            positions = self._by_api.get(api)
            if positions is None:
                positions = self._by_api[api] = array("q")
            positions.append(seq)
        return seq

    def append(self, event: Event) -> None:
        if isinstance(event, ApiCall):
            self.append_api(event.stage, event.pc, event.api, event.args, event.ret)
            return
        seq = self._count
        self._count += 1
        self._bound(event.stage, seq)
        if self._keep:
            self._others.append(seq)
            self._items.append(event)

    def _bound(self, stage: str, seq: int) -> None:
        bound = self._bounds.get(stage)
        if bound is None:
            self._bounds[stage] = [seq, seq]
        else:
            bound[1] = seq

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index]
        if isinstance(item, tuple):
            return make_api_call(index if index >= 0 else len(self._items) + index, item)
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Event]:
        for seq, item in enumerate(self._items):
            yield make_api_call(seq, item) if isinstance(item, tuple) else item

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventLog({self._count} events, {len(self._others)} not API calls)"

    def raw(self) -> Iterator[tuple[int, ApiTuple | Event]]:
        """(seq, item) of every event: an API call as its tuple, any other event as its model."""
        return enumerate(self._items)

    def runs(self, start: int = 0) -> Iterator[tuple[int, int, ApiTuple | Event]]:
        """(first seq, count, item) of each run of equal consecutive items from ``start`` on: a
        loop of identical API calls is one run (every other event is a run of one: events differ
        in their seq)."""
        first = start
        for item, group in itertools.groupby(self._items[start:] if start else self._items):
            count = len(list(group))
            yield first, count, item
            first += count

    def others(self, start: int = 0) -> Iterator[tuple[int, Event]]:
        """(seq, event) of every event that is not an API call, in order, from seq ``start`` on."""
        items = self._items
        positions = self._others
        for index in range(bisect.bisect_left(positions, start) if start else 0, len(positions)):
            seq = positions[index]
            yield seq, items[seq]

    def api_tuples(self) -> Iterator[tuple[int, ApiTuple]]:
        """(seq, (stage, pc, api, args, ret)) of every API call, in order, no model built."""
        for seq, item in enumerate(self._items):
            if isinstance(item, tuple):
                yield seq, item

    def api_positions(self, wanted: Callable[[str], bool]) -> list[int]:
        """Positions of the calls whose ``api`` ``wanted`` accepts (asked once per name), in order."""
        chosen = [positions for api, positions in self._by_api.items() if wanted(api)]
        if len(chosen) == 1:
            return list(chosen[0])
        return sorted(itertools.chain.from_iterable(chosen))

    def api_tuple(self, seq: int) -> ApiTuple:
        item = self._items[seq]
        if not isinstance(item, tuple):
            raise TypeError(f"event {seq} is not an API call")
        return item

    def api_calls_before(self, seq: int) -> int:
        """How many API calls come before position ``seq``."""
        seq = max(0, min(seq, self._count))
        return seq - bisect.bisect_left(self._others, seq) if self._keep else 0

    def api_count(self) -> int:
        return self._count - len(self._others) if self._keep else 0

    def stage_bounds(self) -> dict[str, tuple[int, int]]:
        return {stage: (first, last) for stage, (first, last) in self._bounds.items()}

    def stage_at(self, seq: int) -> str | None:
        if 0 <= seq < len(self._items):
            item = self._items[seq]
            return item[0] if isinstance(item, tuple) else item.stage  # type: ignore[no-any-return]
        return None


# ---- what the analysis asks for, from an EventLog or a plain list ---------------------------


def of_type(events: Sequence[Event], *classes: type[Any]) -> Iterator[tuple[int, Event]]:
    """(position, event) of the events of the given classes, in order. Without ApiCall among
    them, an EventLog skips its API calls without building them."""
    if isinstance(events, EventLog):
        if ApiCall in classes:
            for seq, event in enumerate(events):
                if isinstance(event, classes):
                    yield seq, event
            return
        for seq, event in events.others():
            if isinstance(event, classes):
                yield seq, event
        return
    for seq, event in enumerate(events):
        if isinstance(event, classes):
            yield seq, event


def api_calls_where(events: Sequence[Event], wanted: Callable[[str], bool]) -> Iterator[ApiCall]:
    """The API calls whose ``api`` (module.Function) ``wanted`` accepts, in order; an EventLog
    asks ``wanted`` once per distinct name and builds only the calls it accepts."""
    if isinstance(events, EventLog):
        for seq in events.api_positions(wanted):
            yield events[seq]  # type: ignore[misc]
        return
    for event in events:
        if isinstance(event, ApiCall) and wanted(event.api):
            yield event


def stage_bounds(events: Sequence[Event]) -> dict[str, tuple[int, int]]:
    """stage -> (first seq, last seq) of the events it caused."""
    if isinstance(events, EventLog):
        return events.stage_bounds()
    bounds: dict[str, tuple[int, int]] = {}
    for event in events:
        first, last = bounds.get(event.stage, (event.seq, event.seq))
        bounds[event.stage] = (min(first, event.seq), max(last, event.seq))
    return bounds


def stage_lookup(events: Sequence[Event]) -> Callable[[int], str | None]:
    """seq -> the stage of that event (None if there is none)."""
    if isinstance(events, EventLog):
        return events.stage_at
    owner = {e.seq: e.stage for e in events}
    return owner.get
