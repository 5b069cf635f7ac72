#!/usr/bin/env python3
"""Bare-Speakeasy parity: does chainreplay's guest make the same API calls as Speakeasy's?

    python bench/parity.py FOLDER [FOLDER ...] [--json PATH] [--timeout S] [--faithful]
                           [--argv ARGS] [--no-marker]

Each user-mode PE (.exe, .dll) in the folders runs twice in this process:

* bare Speakeasy (``speakeasy.Speakeasy`` with its own default configuration, as its command
  line would run it, the module's entry point only), with Speakeasy's dropping of repeated calls
  turned off: ``Profiler.record_api_event`` keeps a call that repeats one of the last three
  events unless it is given ``deduplicate=False``; there is no configuration key for it, so the
  method is wrapped to pass it;
* chainreplay's ``emulate`` on the plan ``chainreplay run FILE`` builds (fast mode unless
  ``--faithful``).

Both get the variable CHAINREPLAY_SANDBOX=replay-only (so this project's samples wake up;
``--no-marker`` leaves it out of both) and the same ``--argv``. The API sequences (names,
module lower-cased) are compared call by call; a binary matches when both sequences are equal.
Prints one line per binary (match, call counts, the first divergence) and writes a JSON summary
(default reports/bench/parity.json). The differences chainreplay makes on purpose are listed in
docs/limitations.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import speakeasy  # noqa: E402
from speakeasy.config import get_default_config_dict  # noqa: E402
from speakeasy.profiler import Profiler  # noqa: E402

from emulator.environment import GuestEnvironment, split_arguments  # noqa: E402
from emulator.events import ApiCall  # noqa: E402
from emulator.limits import Limits  # noqa: E402
from emulator.plan import SANDBOX_MARKER_NAME, SANDBOX_MARKER_VALUE, ReplayPlan  # noqa: E402
from emulator.replay import emulate  # noqa: E402

Call = tuple[str, tuple[str, ...]]
DEFAULT_JSON = ROOT / "reports" / "bench" / "parity.json"
DEFAULT_TIMEOUT = 60.0
MAX_ARG_CHARS = 80
# Bare Speakeasy runs in a child: killed this long after twice its timeout, 6 GiB more address space.
BARE_GRACE_SECONDS = 30.0
BARE_ADDRESS_SPACE = 6 << 30


def _no_dedup() -> None:
    """Speakeasy keeps every API call in its report (repeat-dropping off)."""
    original = Profiler.record_api_event
    if getattr(original, "_parity_wrapped", False):
        return

    def record_api_event(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["deduplicate"] = False
        return original(self, *args, **kwargs)

    record_api_event._parity_wrapped = True  # type: ignore[attr-defined]
    Profiler.record_api_event = record_api_event  # type: ignore[method-assign]


def _name(api: str) -> str:
    module, _, func = api.partition(".")
    return f"{module.lower()}.{func}"


def run_bare(path: Path, timeout: float, argv: list[str], marker: bool) -> tuple[list[Call], str]:
    """Bare Speakeasy in a forked child, killed if it outlives its own timeout by far (its
    free-range search can take many minutes to map one huge allocation)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_bare_child, args=(sender, path, timeout, argv, marker), daemon=True)
    child.start()
    sender.close()
    deadline = time.monotonic() + timeout * 2 + BARE_GRACE_SECONDS
    result: tuple[list[Call], str] | None = None
    try:
        while time.monotonic() < deadline and child.is_alive():
            if receiver.poll(0.5):
                result = receiver.recv()
                break
        if result is None and receiver.poll(0):
            result = receiver.recv()
    except EOFError:  # the child died before answering (out of address space, a crash)
        result = ([], f"error: bare Speakeasy's process ended (exit {child.exitcode}) without a result")
    child.join(1)
    if child.is_alive():
        child.kill()
        child.join()
    return (
        result if result is not None else ([], f"killed: still running after {timeout * 2 + BARE_GRACE_SECONDS:.0f} s")
    )


def _bare_child(sender: Any, path: Path, timeout: float, argv: list[str], marker: bool) -> None:
    import resource

    # Bare Speakeasy maps whatever the sample asks for; keep it from exhausting the machine. The
    # cap bounds what the child adds to what it inherited (earlier in-process emulations hold
    # gigabytes of Unicorn's translation buffers).
    from emulator.replay import _inherited_address_space

    limit = _inherited_address_space() + BARE_ADDRESS_SPACE
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        sender.send(_run_bare_here(path, timeout, argv, marker))
    except Exception as err:  # noqa: BLE001 - MemoryError included: reported, not raised
        sender.send(([], f"error: {type(err).__name__}: {err}"[:200]))


def _run_bare_here(path: Path, timeout: float, argv: list[str], marker: bool) -> tuple[list[Call], str]:
    _no_dedup()
    config = get_default_config_dict()
    config["timeout"] = timeout
    config["max_total_time"] = timeout
    if marker:
        config["env"] = {**config["env"], SANDBOX_MARKER_NAME.lower(): SANDBOX_MARKER_VALUE}
    se: Any = speakeasy.Speakeasy(config=config, argv=argv)
    outcome = "completed"
    try:
        module = se.load_module(data=path.read_bytes(), filename=path.name)
        se.run_module(module, all_entrypoints=False)
    except Exception as err:  # noqa: BLE001 - any engine failure is reported, not raised
        outcome = f"error: {type(err).__name__}: {err}"[:200]
    calls: list[Call] = []
    for run in se.emu.get_profiler().runs:
        for event in run.events:
            name = getattr(event, "api_name", None)
            if name:
                args = tuple(str(getattr(a, "display", a))[:MAX_ARG_CHARS] for a in event.args)
                calls.append((_name(name), args))
        error = getattr(run, "error", None)
        if error is not None and outcome == "completed":
            outcome = f"run {run.type}: {getattr(error, 'type', error)}"
    se.shutdown()
    return calls, outcome


def run_chainreplay(path: Path, timeout: float, argv: list[str], marker: bool, mode: str) -> tuple[list[Call], str]:
    plan = ReplayPlan(
        name=path.stem,
        target_path=str(path.resolve()),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{path.name}",
        sandbox_marker=marker,
        guest=GuestEnvironment(argv=argv),
        limits=Limits(timeout=timeout),
        mode=mode,  # type: ignore[arg-type]
    )
    recording = emulate(plan)
    calls = [
        (_name(e.api), tuple(a[:MAX_ARG_CHARS] for a in e.args)) for e in recording.events if isinstance(e, ApiCall)
    ]
    outcome = recording.status + (f": {recording.detail}" if recording.detail else "")
    return calls, outcome[:200]


def first_divergence(bare: list[Call], ours: list[Call]) -> dict[str, Any] | None:
    for index in range(max(len(bare), len(ours))):
        a = bare[index] if index < len(bare) else None
        b = ours[index] if index < len(ours) else None
        if a is None or b is None or a[0] != b[0]:
            return {
                "index": index,
                "speakeasy": f"{a[0]}({', '.join(a[1])})" if a else None,
                "chainreplay": f"{b[0]}({', '.join(b[1])})" if b else None,
            }
    return None


def binaries(folders: list[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        for path in paths:
            if path.suffix.lower() in (".exe", ".dll") and path.is_file() and path.read_bytes()[:2] == b"MZ":
                found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--faithful", action="store_true", help="compare chainreplay's faithful mode")
    parser.add_argument("--argv", default="", help="command-line arguments for every binary")
    parser.add_argument("--no-marker", action="store_true", help="do not set CHAINREPLAY_SANDBOX")
    args = parser.parse_args(argv)
    sample_argv = split_arguments(args.argv)
    mode = "faithful" if args.faithful else "fast"
    rows: list[dict[str, Any]] = []
    for path in binaries(args.folders):
        started = time.monotonic()
        bare, bare_outcome = run_bare(path, args.timeout, sample_argv, not args.no_marker)
        ours, our_outcome = run_chainreplay(path, args.timeout, sample_argv, not args.no_marker, mode)
        divergence = first_divergence(bare, ours)
        row = {
            "binary": str(path),
            "match": divergence is None,
            "speakeasy_calls": len(bare),
            "chainreplay_calls": len(ours),
            "speakeasy_outcome": bare_outcome,
            "chainreplay_outcome": our_outcome,
            "first_divergence": divergence,
            "seconds": round(time.monotonic() - started, 2),
        }
        rows.append(row)
        where = ""
        if divergence:
            where = (
                f"  at #{divergence['index']}: speakeasy {divergence['speakeasy']}"
                f" / chainreplay {divergence['chainreplay']}"
            )
        print(  # noqa: T201 - a bench script reports on stdout
            f"{'MATCH' if row['match'] else 'DIFF '} {path.name:<16} {len(bare):>5} / {len(ours):>5} calls{where}"
        )
    summary = {
        "chainreplay_mode": mode,
        "speakeasy_version": getattr(speakeasy, "__version__", None) or _speakeasy_version(),
        "binaries": len(rows),
        "matching": sum(1 for r in rows if r["match"]),
        "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"{summary['matching']} of {summary['binaries']} match; JSON: {args.json}")  # noqa: T201
    return 0


def _speakeasy_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("speakeasy-emulator")
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
