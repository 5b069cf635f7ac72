"""COM classes: ``CoCreateInstance`` of a class the project emulates makes its object; a class
nobody emulates is said.

Speakeasy's ``CoCreateInstance`` knows WMI's locator and context only; any other class answers
``REGDB_E_CLASSNOTREG`` and the guest moves on (or gives up) with nothing in the report but the
call. A class of :data:`EMULATED` (WinHttp.WinHttpRequest.5.1: emulator/apis/comhttp.py) is
made here: its methods are API traps (``emu.add_callback``) the project's handlers answer. A
class the call could not make is a note ``com_class_not_emulated`` naming its CLSID and, for the
classes loaders ask for (:data:`KNOWN_CLASSES`), its ProgID and what it does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from emulator.apis import comhttp
from emulator.apis.core import GuestApi
from emulator.backends.speakeasy import compat
from emulator.services import ReplayServices

COM_CLASS_NOT_EMULATED = "com_class_not_emulated"
REGDB_E_CLASSNOTREG = 0x80040154
CLASS_E_CLASSNOTAVAILABLE = 0x80040111
E_NOINTERFACE = 0x80004002
E_POINTER = 0x80004003
S_OK = 0

# CLSID -> (ProgID, what it is): classes downloaders, droppers and persistence code ask COM for.
KNOWN_CLASSES = {
    comhttp.CLSID_WINHTTP_REQUEST: ("WinHttp.WinHttpRequest.5.1", "an HTTP client"),
    "88d96a0a-f192-11d4-a65f-0040963251e5": ("MSXML2.XMLHTTP.6.0", "an HTTP client"),
    "f5078f35-c551-11d3-89b9-0000f81fe221": ("MSXML2.XMLHTTP.3.0", "an HTTP client"),
    "ed8c108e-4349-11d2-91a4-00c04f7969e8": ("Microsoft.XMLHTTP", "an HTTP client"),
    "88d96a0b-f192-11d4-a65f-0040963251e5": ("MSXML2.ServerXMLHTTP.6.0", "an HTTP client"),
    "afba6b42-5692-48ea-8141-dc517dcf0ef1": ("MSXML2.ServerXMLHTTP.3.0", "an HTTP client"),
    "4991d34b-80a1-4291-83b6-3328366b9097": ("BITS BackgroundCopyManager", "a BITS job manager (T1197)"),
    "0002df01-0000-0000-c000-000000000046": ("InternetExplorer.Application", "a browser driven by COM"),
    "0f87369f-a4e5-4cfc-bd3e-73e6154572dd": ("Schedule.Service", "the Task Scheduler (T1053.005)"),
    "13709620-c279-11ce-a49e-444553540000": ("Shell.Application", "the shell (ShellExecute, namespaces)"),
    "72c24dd5-d70a-438b-8a42-98424b88afb8": ("WScript.Shell", "a script shell (Run, Exec, RegWrite)"),
    "9ba05972-f6a8-11cf-a442-00a0c90a8f39": ("ShellWindows", "the shell's windows (a COM proxy)"),
    "c08afd90-f2a1-11d1-8455-00a0c91f3880": ("ShellBrowserWindow", "the shell's browser window (a COM proxy)"),
    "49b2791a-b1ae-4c90-9b8e-e860ba07f889": ("MMC20.Application", "the management console (lateral movement)"),
    "00024500-0000-0000-c000-000000000046": ("Excel.Application", "Excel (macros, DDE)"),
}
_XML = (comhttp.IID_IUNKNOWN, comhttp.IID_IDISPATCH, comhttp.IID_IXMLHTTP_REQUEST)
_SERVER_XML = (*_XML, comhttp.IID_ISERVER_XMLHTTP_REQUEST, comhttp.IID_ISERVER_XMLHTTP_REQUEST2)
# The classes made here: CLSID -> (the interfaces the object answers, its factory).
EMULATED: dict[str, tuple[tuple[str, ...], Callable[[GuestApi, Callable[[str, str], int]], int]]] = {
    comhttp.CLSID_WINHTTP_REQUEST: (
        (comhttp.IID_IUNKNOWN, comhttp.IID_IDISPATCH, comhttp.IID_IWINHTTP_REQUEST),
        comhttp.create,
    ),
    "88d96a0a-f192-11d4-a65f-0040963251e5": (_XML, comhttp.create_xmlhttp),  # MSXML2.XMLHTTP.6.0
    "f5078f35-c551-11d3-89b9-0000f81fe221": (_XML, comhttp.create_xmlhttp),  # MSXML2.XMLHTTP.3.0
    "ed8c108e-4349-11d2-91a4-00c04f7969e8": (_XML, comhttp.create_xmlhttp),  # Microsoft.XMLHTTP
    "88d96a0b-f192-11d4-a65f-0040963251e5": (_SERVER_XML, partial(comhttp.create_xmlhttp, server=True)),
    "afba6b42-5692-48ea-8141-dc517dcf0ef1": (_SERVER_XML, partial(comhttp.create_xmlhttp, server=True)),
}


def install(se: Any, emu: Any, memory: Any, services: ReplayServices) -> None:
    def co_create_instance(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # CoCreateInstance(rclsid, pUnkOuter, dwClsContext, riid, ppv)
        clsid_at, _outer, _context, iid_at, out = argv[:5]
        api = GuestApi(memory, services, api_name, module="ole32")
        try:
            clsid = comhttp.read_guid(api, clsid_at)
            iid = comhttp.read_guid(api, iid_at)
        except Exception:
            return orig(argv)
        made = EMULATED.get(clsid)
        if made is not None:
            interfaces, factory = made
            if not out:
                return E_POINTER
            if iid not in interfaces:
                api.write_ptr(out, 0)
                return E_NOINTERFACE
            api.write_ptr(out, factory(api, lambda module, name: compat.callback_address(emu, module, name)))
            return S_OK
        rv = orig(argv)
        if isinstance(rv, int) and rv & 0xFFFFFFFF in (REGDB_E_CLASSNOTREG, CLASS_E_CLASSNOTAVAILABLE, E_NOINTERFACE):
            progid, what = KNOWN_CLASSES.get(clsid, ("", ""))
            named = f" ({progid}: {what})" if progid else ""
            services.recorder.note(
                COM_CLASS_NOT_EMULATED,
                f"ole32.{api_name.rpartition('.')[2]} of CLSID {{{clsid}}}{named}, interface {{{iid}}}: "
                f"the emulator has no such COM class (answered {rv & 0xFFFFFFFF:#x}); what the program "
                "would have done with it did not happen",
            )
        return rv

    se.add_api_hook(co_create_instance, "ole32", "CoCreateInstance")
