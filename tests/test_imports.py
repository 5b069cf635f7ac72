"""What a cold replay imports (issue 18 target 2): modules neither process uses are loaded when
first used, models when first used, and a lazy package stays correct whichever way it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emulator import installed

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

# Never needed by a cold replay, in either process; asyncio's package brings these.
UNUSED = ("ssl", "concurrent.futures", "asyncio.base_events", "email")

STATE = (
    """
def state():
    import json, os, sys
    from emulator.lazyimport import is_waiting
    return {
        "waiting": [name for name in ("asyncio", "importlib.metadata", "html", "capstone") if is_waiting(name)],
        "imported": sorted(name for name in UNUSED if name in sys.modules),
        "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
    }
"""
    + f"UNUSED = {UNUSED!r}\n"
)

# The command line, as a user runs it: the parent's state when it forks the emulation child.
CLI_SCRIPT = (
    STATE
    + """
import json, os, sys
fork, at_fork = os.fork, []
def recording_fork():
    if not at_fork:
        from emulator.plan import ReplayPlan
        import gc
        frozen = gc.get_freeze_count() > 20000  # what the shared import left: never walked again
        at_fork.append({**state(), "plan_built": ReplayPlan.__pydantic_complete__, "frozen": frozen})
        at_fork.append(gc.get_freeze_count())
    return fork()
os.fork = recording_fork
def report():
    import gc
    # the output libraries, imported beside the child, frozen too
    # numpy: only for lineage searches over large carriers (emulator/analysis/lineage_numpy.py)
    frozen_after = gc.get_freeze_count() > at_fork[1] + 50000
    print(json.dumps({**at_fork[0], "frozen_after": frozen_after, "numpy": "numpy" in sys.modules}))
import atexit
atexit.register(report)
sys.argv = ["chainreplay", *sys.argv[1:]]
from emulator.cli import main
main()
"""
)

# The pre-started child's imports and emulation, in one process: the parent's imports before the
# fork, the engine's import, the replay.
CHILD_SCRIPT = (
    STATE
    + """
import json, os, sys
from pathlib import Path
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # as emulator.cli.main does
from emulator import prestart
prestart._import_shared()
from emulator.plan import ReplayPlan
from emulator.events import ApiCall
built = {"plan": ReplayPlan.__pydantic_complete__, "events": ApiCall.__pydantic_complete__}
from emulator.backends.speakeasy import warm_steps
from emulator.replay import emulate
from emulator.scenario import load_scenario
plan = load_scenario(Path(sys.argv[1]))
recording = emulate(plan)
print(json.dumps({**state(), "built": built, "events": len(recording.events)}))
"""
)


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=300,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_cold_replay_never_loads_asyncio_or_entry_points(tmp_path: Path) -> None:
    """The command line's parent when it forks the emulation child, and the child's imports and
    replay: asyncio's package (ssl, sockets, futures) and importlib.metadata stay unexecuted (and
    html and Capstone in the child)
    (pydantic's plugins are off; the engine's version is read without it); the plan models are
    built by the parent after the fork, the event models before it; what the parent imported
    before the fork, and then the output libraries, are frozen (the collector never walks them
    again); numpy is never imported (3CX's carriers are small)."""
    parent = _run(CLI_SCRIPT, "run", str(SCENARIOS / "3cx"), "-o", str(tmp_path / "out"), "-q")
    assert parent == {
        "waiting": ["asyncio", "importlib.metadata"],
        "imported": [],
        "plugins_env": "__all__",
        "plan_built": False,
        "frozen": True,
        "frozen_after": True,
        "numpy": False,
    }
    assert (tmp_path / "out" / "report.json").is_file()
    child = _run(CHILD_SCRIPT, str(SCENARIOS / "3cx"))
    # html: Speakeasy's GDB stub; capstone: its disassembler, made when first used
    assert child["waiting"] == ["asyncio", "importlib.metadata", "html", "capstone"]
    assert child["imported"] == []
    assert child["built"] == {"plan": False, "events": True}
    assert isinstance(child["events"], int) and child["events"] > 100


def test_a_users_pydantic_plugin_setting_is_kept(tmp_path: Path) -> None:
    """PYDANTIC_DISABLE_PLUGINS set by the user (empty: every plugin) is left as it is, and
    pydantic then looks for plugins before the fork (importlib.metadata is executed)."""
    parent = _run(
        CLI_SCRIPT,
        "run",
        str(SCENARIOS / "benign-dll"),
        "-o",
        str(tmp_path / "out"),
        "-q",
        env={"PYDANTIC_DISABLE_PLUGINS": ""},
    )
    assert parent["plugins_env"] == ""
    assert parent["waiting"] == ["asyncio"]
    assert parent["frozen"] and parent["frozen_after"]


def test_installed_versions_are_importlib_metadatas() -> None:
    """Every installed distribution's version as importlib.metadata gives it, most of them read
    directly (the engine's among them)."""
    import importlib.metadata

    names = sorted({dist.metadata["Name"] for dist in importlib.metadata.distributions()})
    assert len(names) > 20
    assert [installed.version(name) for name in names] == [importlib.metadata.version(name) for name in names]
    direct = [name for name in names if isinstance(installed._from_path(name), str)]
    assert "speakeasy-emulator" in direct
    assert len(direct) > len(names) // 2
    assert installed.version("no-such-distribution-installed") is None


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ({"Foo.Bar-1.0.dist-info": "Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.0 \n\nVersion: 9\n"}, "1.0 "),
        ({"foo_bar-1.0.dist-info": "Name: foo_bar\nversion:\t2.0rc1\nSummary: x\n"}, "2.0rc1"),
        ({"foo_bar-1.0.dist-info": "Name: foo_bar\nVersion: 1.0\n  folded\n"}, None),
        ({"foo_bar-1.0.dist-info": "Name: Fo\u00f6\nVersion: 1.0\n"}, None),
        ({"foo_bar-1.0.dist-info": "Name : foo_bar\nVersion: 1.0\n"}, None),
        ({"foo_bar-1.0.dist-info": "Name: foo_bar\nSummary: none\n"}, None),
        ({"foo_bar-1.0.dist-info": ""}, None),
        ({"foo_bar-1.0.dist-info": "Version: 1.0\n", "Foo_Bar-2.0.dist-info": "Version: 2.0\n"}, None),
        ({"foo_bar-1.0.egg-info": "Version: 1.0\n"}, None),
    ],
)
def test_an_unusual_distribution_is_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders: dict[str, str], expected: str | None
) -> None:
    """A version is read directly only from a plain ``Version`` header of the one matching
    ``.dist-info`` folder (the first header, unfolded, in printable ASCII, with every header
    line before it well-formed); anything else is left to importlib.metadata."""
    for folder, metadata in folders.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / ("PKG-INFO" if folder.endswith(".egg-info") else "METADATA")).write_text(
            metadata, encoding="utf-8"
        )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    found = installed._from_path("foo-bar")
    assert (found if isinstance(found, str) else None) == expected
    if expected is not None:
        import importlib.metadata

        assert importlib.metadata.version("foo-bar") == expected


PACKAGE = {
    "pkg/__init__.py": "import runs; runs.ran.append(__name__)\nfrom .base import *\nfrom .events import *\n",
    "pkg/base.py": (
        "import runs; runs.ran.append(__name__)\nfrom . import events\n"
        "__all__ = ['Loop']\nclass Loop(events.AbstractLoop):\n    pass\n"
    ),
    "pkg/events.py": (
        "import runs; runs.ran.append(__name__)\nfrom . import helpers\n"
        "__all__ = ['AbstractLoop']\nclass AbstractLoop:\n    pass\n"
    ),
    "pkg/helpers.py": "import runs; runs.ran.append(__name__)\n",
    "pkg/alone.py": "import runs; runs.ran.append(__name__)\nVALUE = 7\n",
    "broken.py": "import runs; runs.ran.append(__name__)\nraise RuntimeError('broken at import')\n",
    "runs.py": "ran = []\n",
}

LAZY_SCRIPT = """
import importlib, json, sys
from emulator.lazyimport import LazyModule, is_waiting, lazily_imported
import runs
with lazily_imported(["pkg", "broken"], independent=["pkg.alone"]):
    import pkg.alone
    import broken
result = {"alone": pkg.alone.VALUE, "waiting": is_waiting("pkg"), "ran_before": list(runs.ran)}
how = sys.argv[1]
if how == "submodule":  # a submodule imported before the package is used
    import pkg.events
elif how == "from":
    from pkg.events import AbstractLoop
elif how == "attribute":
    pkg.Loop
try:
    broken.anything
except RuntimeError as err:
    result["broken"] = str(err)
result["broken_left"] = "broken" in sys.modules
result["same"] = [
    pkg.events is sys.modules["pkg.events"],
    pkg.AbstractLoop is pkg.events.AbstractLoop,
    issubclass(pkg.Loop, pkg.events.AbstractLoop),
    type(pkg) is not LazyModule,
    pkg.__spec__.loader is pkg.__loader__,
    sys.modules["pkg.events"].__spec__.name == "pkg.events",
]
result["ran"] = list(runs.ran)
print(json.dumps(result))
"""


@pytest.mark.parametrize("how", ["submodule", "from", "attribute"])
def test_a_lazy_package_runs_once_whichever_way_it_is_first_used(tmp_path: Path, how: str) -> None:
    """A package imported lazily (with a submodule that may load alone) runs when first used,
    exactly once, before any of its other submodules, even when a submodule is imported directly
    first: the same classes everywhere (a submodule loaded before its package would see its own
    package half-run). A module whose execution fails is not left behind, as a failed import."""
    for name, text in PACKAGE.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", LAZY_SCRIPT, how],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)])),
        timeout=60,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["alone"] == 7
    assert result["waiting"] is True
    assert result["ran_before"] == ["pkg.alone"]
    assert result["broken"] == "broken at import"
    assert result["broken_left"] is False
    assert result["same"] == [True] * 6
    assert result["ran"] == ["pkg.alone", "pkg", "pkg.base", "pkg.events", "pkg.helpers", "broken"]


def test_independent_submodules_import_nothing_from_their_package() -> None:
    """A submodule named independent loads while its lazy package waits: it must import nothing
    from that package (else it would see the package half-run). Checked on this Python's source."""
    import ast
    import importlib.util

    from emulator import prestart

    assert prestart.SHARED_INDEPENDENT
    for name in prestart.SHARED_INDEPENDENT:
        package = name.rpartition(".")[0]
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not (node.module or "").startswith(package), ast.dump(node)
            elif isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == package for alias in node.names), ast.dump(node)


# The parent's shared import before the fork: which dataclasses got their methods from the shipped
# code (emulator/precompiled.py), and whether anything is still served after it.
SERVED_SCRIPT = """
import json, os
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # as emulator.cli.main does
from emulator import precompiled, prestart
prestart._import_shared()
import annotated_types, dataclasses, re, typing
def codes(code):
    yield code
    for const in code.co_consts:
        if hasattr(const, "co_consts"):
            yield from codes(const)
inner = {id(each) for key, code in precompiled.shipped().items() if key[0] == "exec" for each in codes(code)}
classes = (annotated_types.Gt, annotated_types.Interval, annotated_types.MaxLen)
print(json.dumps({
    "served": [cls.__name__ for cls in classes if id(cls.__init__.__code__) in inner],
    "left": [name for name in ("exec", "compile") if name in vars(dataclasses) or name in vars(typing)]
    + (["regex"] if re._compiler.compile is not precompiled._ORIGINAL_REGEX_COMPILE else []),
}))
"""


def test_the_shared_import_is_served_the_shipped_code() -> None:
    """Before the fork, the dataclasses pydantic's imports create take their methods from the
    shipped table, and once the import is over dataclasses and typing compile as before."""
    assert _run(SERVED_SCRIPT) == {"served": ["Gt", "Interval", "MaxLen"], "left": []}


def test_the_shipped_code_is_what_compile_builds() -> None:
    """Every shipped code object is what ``compile`` builds from its text now, as the standard
    library's callers compile it (no inherited ``__future__`` flags)."""
    from emulator import precompiled

    table = precompiled.shipped()
    assert len(table) > 500, "built for another interpreter, dataclasses.py or typing.py: rebuild it"
    for key, code in table.items():
        if key[0] != precompiled.REGEX:
            mode, text = key
            assert code == compile(text, precompiled.FILENAME, mode, dont_inherit=True), text


def test_the_shipped_code_is_what_the_builder_builds_now() -> None:
    """emulator/data/compiled-sources.bin holds exactly what ``python -m emulator.precompiled``
    builds now (rebuild it when a dataclass or annotation imported by a cold run changes)."""
    from emulator import precompiled

    built = precompiled.build_file()
    assert built == precompiled.DATA_FILE.read_bytes(), "rebuild it: python -m emulator.precompiled"


def test_text_outside_the_table_compiles_as_the_standard_library_does() -> None:
    """A dataclass and a forward reference the table does not know, made while serving, are what
    they are without it: the same methods, annotations (no ``__future__`` flag of the serving
    module leaks into them) and evaluation."""
    import dataclasses
    import typing

    from emulator import precompiled

    def make() -> tuple[type, typing.ForwardRef]:
        namespace: dict[str, object] = {}
        exec(  # a class declared without `from __future__ import annotations`
            "import dataclasses\n@dataclasses.dataclass(frozen=True, order=True)\nclass Made:\n"
            "    unseen_field_a: int\n    unseen_field_b: 'list[str]' = dataclasses.field(default_factory=list)\n",
            namespace,
        )
        return namespace["Made"], typing.ForwardRef("dict[str, 'unseen_type_name'] | None")  # type: ignore[return-value]

    plain, plain_ref = make()
    with precompiled.serving():
        assert vars(dataclasses).get("exec") is precompiled._exec
        served, served_ref = make()
    assert "exec" not in vars(dataclasses) and "compile" not in vars(typing)
    for name in ("__init__", "__repr__", "__eq__", "__lt__", "__hash__", "__setattr__"):
        mine, theirs = getattr(served, name), getattr(plain, name)
        assert mine.__code__ == theirs.__code__, name
        assert mine.__annotations__ == theirs.__annotations__, name
    assert repr(served(1, ["x"])) == repr(plain(1, ["x"]))
    assert served(1) == served(1) and served(1) < served(2) and hash(served(1, ("x",))) == hash(plain(1, ("x",)))
    assert served_ref.__forward_code__ == plain_ref.__forward_code__
    assert served_ref == plain_ref


def test_a_table_for_another_interpreter_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table built for other bytecode (or another dataclasses.py / typing.py) is not used: no
    text is served, every one compiles as before."""
    import dataclasses

    from emulator import precompiled

    monkeypatch.setattr(precompiled, "_table", None)
    monkeypatch.setattr(precompiled, "_header", lambda: (b"\0\0\r\n", 0, ("another", "digest")))
    assert precompiled.shipped() == {}
    with precompiled.serving():
        assert "exec" not in vars(dataclasses)


def test_shipped_regular_expressions_are_what_re_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shipped pattern's program is what ``re`` compiles it to now (same pattern, flags,
    groups and names), and while serving a known pattern is built from it without compiling."""
    import re

    from emulator import precompiled

    patterns = [key for key in precompiled.shipped() if key[0] == precompiled.REGEX]
    assert len(patterns) > 100
    parsed: list[object] = []
    parse = re._parser.parse  # type: ignore[attr-defined]

    def counted(*args: object) -> object:
        parsed.append(args)
        return parse(*args)

    monkeypatch.setattr(re._parser, "parse", counted)  # type: ignore[attr-defined]
    for _, pattern, flags in patterns:
        re.purge()
        with precompiled.serving():
            served = re.compile(pattern, flags)
        re.purge()
        plain = precompiled._ORIGINAL_REGEX_COMPILE(pattern, flags)
        assert served == plain and served.groupindex == plain.groupindex and served.groups == plain.groups
        assert served.flags == plain.flags, pattern
    assert len(parsed) == len(patterns)  # only the plain compiles parsed their pattern
    assert re._compiler.compile is precompiled._ORIGINAL_REGEX_COMPILE  # type: ignore[attr-defined]
