"""JUnit XML for CI systems: one test case per target and one per expectation.

The document follows the common JUnit schema that GitHub Actions, GitLab CI and Jenkins read:
``<testsuites>`` holding one ``<testsuite name="chainreplay">`` of ``<testcase classname="TARGET"
name="...">`` elements, each with at most one ``<failure message="..." type="...">`` (its text the
evidence or the drift) or ``<skipped message="...">`` (a known failure, an ``xfail``).

Every name, message and text passes through :func:`emulator.sanitize.lines_for_display`: the
drift and the evidence quote what the sample did (paths, hosts, registry values, object names),
and one control character there would make the whole document unreadable to every XML parser.
A message attribute is cut at ``MAX_MESSAGE`` characters; the element's text holds it all.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from emulator.check import TargetResult, render_drift
from emulator.sanitize import for_display, lines_for_display

SUITE_NAME = "chainreplay"
# Characters of a failure's or skip's message attribute (CI systems show it as a title).
MAX_MESSAGE = 1000
# Characters of one line of an element's text.
MAX_TEXT_LINE = 100_000


def _attr(text: str, limit: int = MAX_MESSAGE) -> str:
    return for_display(text, limit)


def _text(text: str) -> str:
    return lines_for_display(text, MAX_TEXT_LINE)


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=_attr(classname), name=_attr(name), time=f"{seconds:.3f}")


def junit_xml(results: list[TargetResult], *, command: str = "check") -> str:
    """The JUnit XML document of ``results``."""
    root = ET.Element("testsuites", name=SUITE_NAME)
    suite = ET.SubElement(root, "testsuite", name=f"{SUITE_NAME} {command}")
    tests = failures = skipped = 0
    total = 0.0
    for result in results:
        replay = _case(suite, result.name, f"replay {result.target}", result.seconds)
        tests += 1
        total += result.seconds
        problems: list[str] = list(result.fail_reasons)
        text: list[str] = []
        if result.drift is not None and result.drift.drifted:
            problems.append(f"drift against {result.baseline}: {len(result.drift.changes)} changes")
            text.append(render_drift(result.drift, title=result.name))
        if problems:
            failures += 1
            failure = ET.SubElement(
                replay, "failure", message=_attr("; ".join(problems)), type="drift" if text else "outcome"
            )
            failure.text = _text("\n".join([*problems, *text]))
        out = ET.SubElement(replay, "system-out")
        out.text = _text(f"outcome {result.outcome}; {result.stages} stages; output {result.outdir}")
        for expectation in result.expectations:
            case = _case(suite, result.name, f"expect: {expectation.name}")
            tests += 1
            if expectation.status == "fail":
                failures += 1
                element = ET.SubElement(case, "failure", message=_attr(expectation.evidence), type="expectation")
                element.text = _text(f"{expectation.name}\n{expectation.evidence}")
            elif expectation.status == "xfail":
                skipped += 1
                ET.SubElement(case, "skipped", message=_attr(f"known failure: {expectation.evidence}"))
    for element, (tests_, failures_, skipped_) in ((suite, (tests, failures, skipped)), (root, (tests, failures, 0))):
        element.set("tests", str(tests_))
        element.set("failures", str(failures_))
        element.set("errors", "0")
        if element is suite:
            element.set("skipped", str(skipped_))
        element.set("time", f"{total:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(results: list[TargetResult], path: Path, *, command: str = "check") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(results, command=command), encoding="utf-8")
