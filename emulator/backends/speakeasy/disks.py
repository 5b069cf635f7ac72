"""The system disk as a device: ``CreateFile("\\\\.\\PhysicalDrive0")`` (or ``"\\\\.\\C:"``)
opens it, and ``DeviceIoControl`` answers the storage queries sandbox checks make (al-khaser,
pafish and commodity loaders read the disk's size and model this way): its length and
geometry, agreeing with the size of drive C: that ``GetDiskFreeSpaceEx`` reports
(``[environment] disk_gb``), and a retail SSD's descriptor (no ``VBOX HARDDISK``, ``VMware
Virtual disk`` or ``QEMU HARDDISK``). Speakeasy had no such device: the open failed, which the
checks read as a sandbox.

The device is a named kernel object Speakeasy's ``CreateFile`` finds by name (its handle is a
kernel object handle), made when a ``CreateFile`` first names it (made at start, it would take
kernel object ids, which are also process ids, and memory from every replay); other control
codes on it fail with ``ERROR_INVALID_FUNCTION``.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from speakeasy.windows import objman

from emulator.backends.speakeasy import compat
from emulator.environment import GuestEnvironment

DEVICE_NAME = "\\\\.\\PhysicalDrive0"
ALIASES = ("\\\\.\\C:", "\\\\?\\PhysicalDrive0", "\\\\?\\C:")
IOCTL_DISK_GET_DRIVE_GEOMETRY = 0x70000
IOCTL_DISK_GET_DRIVE_GEOMETRY_EX = 0x700A0
IOCTL_DISK_GET_LENGTH_INFO = 0x7405C
IOCTL_STORAGE_QUERY_PROPERTY = 0x2D1400
IOCTL_STORAGE_GET_DEVICE_NUMBER = 0x2D1080
STORAGE_DEVICE_PROPERTY = 0
PROPERTY_STANDARD_QUERY = 0
FILE_DEVICE_DISK = 7
FIXED_MEDIA = 12
BUS_TYPE_SATA = 11
ERROR_INVALID_FUNCTION = 1
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_INVALID_PARAMETER = 87
ERROR_NOACCESS = 998
BYTES_PER_SECTOR = 512
SECTORS_PER_TRACK = 63
TRACKS_PER_CYLINDER = 255
# What the disk holds besides drive C: (the EFI, reserved and recovery partitions).
OTHER_PARTITIONS = (100 + 16 + 529) << 20
PRODUCT_ID = "Samsung SSD 860 EVO 500GB"
PRODUCT_REVISION = "RVT04B6Q"
SERIAL_NUMBER = "S3Z2NB0K612345A"
# A kernel object that is never freed by closing its last handle (samples open it many times).
PINNED_REFERENCES = 1 << 30


class DiskDevice(objman.Event):
    """The system disk (an object with a name, found by ``CreateFile``)."""


def disk_length(guest: GuestEnvironment) -> int:
    return (guest.disk_gb << 30) + OTHER_PARTITIONS


def _geometry(length: int) -> bytes:
    per_cylinder = BYTES_PER_SECTOR * SECTORS_PER_TRACK * TRACKS_PER_CYLINDER
    return struct.pack(
        "<qIIII", length // per_cylinder, FIXED_MEDIA, TRACKS_PER_CYLINDER, SECTORS_PER_TRACK, BYTES_PER_SECTOR
    )


def _device_descriptor() -> bytes:
    """STORAGE_DEVICE_DESCRIPTOR of an ATA SSD: no vendor id (ATA disks have none), product,
    revision and serial strings after the 40-byte header."""
    strings = b""
    offsets = []
    for text in (PRODUCT_ID, PRODUCT_REVISION, SERIAL_NUMBER):
        offsets.append(40 + len(strings))
        strings += text.encode("ascii") + b"\0"
    size = 40 + len(strings)
    header = struct.pack("<IIBBBBIIIIII", 1, size, 0, 0, 0, 1, 0, *offsets, BUS_TYPE_SATA, 0)
    return header + b"\0" * (40 - len(header)) + strings


def answer(guest: GuestEnvironment, code: int, request: bytes, out_size: int) -> tuple[int, bytes]:
    """(Win32 error, output) of a control code sent to the disk; a partial STORAGE_DEVICE_DESCRIPTOR
    (the header a caller sizes its buffer from) is a success, as on Windows."""
    length = disk_length(guest)
    if code == IOCTL_DISK_GET_LENGTH_INFO:
        out = struct.pack("<q", length)
    elif code == IOCTL_DISK_GET_DRIVE_GEOMETRY:
        out = _geometry(length)
    elif code == IOCTL_DISK_GET_DRIVE_GEOMETRY_EX:
        out = _geometry(length) + struct.pack("<q", length)
    elif code == IOCTL_STORAGE_GET_DEVICE_NUMBER:
        out = struct.pack("<III", FILE_DEVICE_DISK, 0, 0)
    elif code == IOCTL_STORAGE_QUERY_PROPERTY:
        if len(request) < 8:
            return ERROR_INVALID_PARAMETER, b""
        property_id, query_type = struct.unpack_from("<II", request)
        if property_id != STORAGE_DEVICE_PROPERTY or query_type != PROPERTY_STANDARD_QUERY:
            return ERROR_INVALID_FUNCTION, b""
        descriptor = _device_descriptor()
        if out_size < 8:
            return ERROR_INSUFFICIENT_BUFFER, b""
        return 0, descriptor[:out_size]
    else:
        return ERROR_INVALID_FUNCTION, b""
    if out_size < len(out):
        return ERROR_INSUFFICIENT_BUFFER, b""
    return 0, out


NAMES = frozenset(name.lower() for name in (DEVICE_NAME, *ALIASES))
# The emulator's attribute holding the guest of this replay and its disk object, once made.
STATE = "_chainreplay_disk"
_wrapped = False


def _disk_of(emu: Any) -> Any:
    state = getattr(emu, STATE, None)
    return state.get("disk") if state else None


def _opening(func: Any) -> Any:
    """Speakeasy's CreateFile, making the disk object before a call that names it."""

    @functools.wraps(func)
    def handler(self: Any, emu: Any, argv: Any, ctx: Any = None, *rest: Any) -> Any:
        state = getattr(emu, STATE, None)
        if state is not None and state.get("disk") is None and argv and argv[0]:
            try:
                name = self.read_mem_string(argv[0], self.get_char_width(ctx))
            except Exception:
                name = ""
            if name.rstrip("\\").lower() in NAMES:
                disk = emu.om.new_object(DiskDevice)
                disk.name = DEVICE_NAME
                disk.ref_cnt = PINNED_REFERENCES
                for alias in ALIASES:
                    emu.om.add_symlink(alias, DEVICE_NAME)
                state["disk"] = disk
        return func(self, emu, argv, ctx, *rest)

    return handler


def wrap_create_file() -> None:
    """Wrap Speakeasy's CreateFile handler (once per process, before handler classes are scanned)."""
    global _wrapped
    if _wrapped:
        return
    _wrapped = True
    from speakeasy.winenv.api.usermode import kernel32

    compat.wrap_api_handler(kernel32.Kernel32, "CreateFile", _opening)


def install(se: Any, guest: GuestEnvironment) -> None:
    """The disk of this replay's guest, and a ``DeviceIoControl`` that answers for it (other
    handles: Speakeasy's)."""
    setattr(se.emu, STATE, {"guest": guest, "disk": None})

    def device_io_control(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        handle, code, in_buffer, in_size, out_buffer, out_size, returned = argv[:7]
        disk = _disk_of(emu)
        if disk is None or compat.object_of(emu, handle) is not disk:
            return orig(argv)
        in_size, out_size, code = in_size & 0xFFFFFFFF, out_size & 0xFFFFFFFF, code & 0xFFFFFFFF
        try:
            request = bytes(emu.mem_read(in_buffer, min(in_size, 64))) if in_buffer and in_size else b""
            error, out = answer(guest, code, request, out_size if out_buffer else 0)
            if out:
                emu.mem_write(out_buffer, out)
            if returned:
                emu.mem_write(returned, struct.pack("<I", len(out)))
        except Exception:
            error = ERROR_NOACCESS
        if error:
            emu.set_last_error(error)
            return 0
        return 1

    se.add_api_hook(device_io_control, "kernel32", "DeviceIoControl")
