"""A scenario whose key holds a control character gets a one-line error (found by Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.scenario import ScenarioError, load_scenario


@pytest.mark.parametrize("key", ["\n", "a\rb", "x\u2028y"])
def test_a_key_with_a_line_break_is_named_on_one_line(tmp_path: Path, key: str) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    escaped = key.encode("unicode_escape").decode()
    (folder / "scenario.toml").write_text(f'[scenario]\nname = "x"\n"{escaped}" = []\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(folder)
    message = str(raised.value)
    assert "unknown key" in message
    assert message.splitlines() == [message]
