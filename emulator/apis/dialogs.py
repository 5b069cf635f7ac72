"""Message boxes nobody answers: the guest has no user, so a box with a timeout times out.

Speakeasy answers ``MessageBox`` / ``MessageBoxEx`` with IDCANCEL and does not know the
(undocumented but widely used) ``MessageBoxTimeoutA/W`` that launchers and installers call to
show an error that goes away by itself.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

IDCANCEL = 2
# What MessageBoxTimeout returns when the box closed itself.
MB_TIMEDOUT = 32000
INFINITE = 0xFFFFFFFF


@apihook("user32", ["MessageBoxTimeoutA", "MessageBoxTimeoutW"], argc=6)
def message_box_timeout(api: GuestApi, argv: list[int]) -> int:
    """int MessageBoxTimeout(HWND, LPCTSTR text, LPCTSTR caption, UINT type, WORD language, DWORD ms).

    The box stays up for ``ms`` of virtual time, then closes itself (MB_TIMEDOUT); with no
    timeout it is dismissed as Speakeasy dismisses MessageBox (IDCANCEL)."""
    milliseconds = argv[5] & 0xFFFFFFFF
    if milliseconds == INFINITE:
        return IDCANCEL
    _services(api).clock.sleep(milliseconds)
    return MB_TIMEDOUT
