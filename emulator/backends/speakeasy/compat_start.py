"""Private Speakeasy names the start-up work relies on (setup.py, prestart.py): the PEB loader
list linked once and the once-per-process tables read ahead.

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported.
"""

from __future__ import annotations

from typing import Any

import speakeasy.windows.export_manifest as se_manifest
import speakeasy.windows.objman as se_objman
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.api.sigdb as se_sigdb

from emulator.backends.speakeasy.compat import _incompatible, _require_params

# ---- start-up: the loader list of the PEB linked once ---------------------------------------


def _check_peb_links() -> None:
    _require_params(se_winemu.WindowsEmulator, "init_peb", ("user_mods", "proc"))
    _require_params(se_objman.Process, "init_peb", ("modules",))
    _require_params(se_objman.Process, "add_module_to_peb", ("module",))
    _require_params(se_objman.Process, "_sync_peb_module_links", ())
    _require_params(se_manifest, "get_export_manifest", ("module", "arch"))
    _require_params(se_sigdb, "get_default_database", ())
    _require_params(se_sigdb.SignatureDatabase, "get_functions", ("dll", "arch"))
    for name in ("ARCH_X86", "ARCH_X64"):
        if not hasattr(se_sigdb, name):
            raise _incompatible(f"speakeasy.winenv.api.sigdb.{name} is missing")


_check_peb_links()


def link_peb_once(emu: Any) -> None:
    """The process's loader list is linked once per ``init_peb``, not once per module.

    Speakeasy re-links every loader entry of the three PEB rings after adding each module (and
    writes each back through its struct layer): quadratic in the 50-odd decoy DLLs, about a
    fifth of its start-up. The last re-link writes every entry, so the guest memory is the same.
    """
    original = emu.init_peb

    def init_peb(user_mods: Any, proc: Any = None) -> Any:
        process = proc or emu.curr_process
        process._sync_peb_module_links = lambda: None
        try:
            return original(user_mods, proc)
        finally:
            del process._sync_peb_module_links
            process._sync_peb_module_links()

    emu.init_peb = init_peb


# ---- start-up: the once-per-process tables, read ahead ---------------------------------------


def read_engine_tables(module: str, arch: str) -> None:
    """Read what building ``module``'s decoy image on ``arch`` ("x86" or "x64") reads first in
    a process (Speakeasy caches it for the process's life): its export manifest or, when it has
    none, its declarations in the signature database."""
    if se_manifest.get_export_manifest(module.lower(), arch) is None:
        signature_arch = se_sigdb.ARCH_X86 if arch == "x86" else se_sigdb.ARCH_X64
        se_sigdb.get_default_database().get_functions(module, signature_arch)
