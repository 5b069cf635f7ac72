"""The guest machine: the scenario's [environment] settings as flags, like Speakeasy's CLI."""

from __future__ import annotations

import argparse

from emulator.cli.common import (
    UsageError,
)
from emulator.plan import ReplayPlan

ENVIRONMENT_FLAGS = {
    "processors": int,
    "memory_mb": int,
    "disk_gb": int,
    "disk_free_gb": int,
    "uptime_ms": int,
    "cpu_vendor": str,
    "cpu_brand": str,
}


def _add_environment_flags(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("guest machine (override the scenario's [environment])")
    group.add_argument(
        "--argv",
        metavar="ARGS",
        help='arguments for the sample, split like a shell, backslashes kept: --argv="-o \\"C:\\out dir\\""',
    )
    group.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="guest environment variable (repeatable)"
    )
    group.add_argument("--hostname", metavar="NAME", help="the guest's computer name")
    group.add_argument("--user", metavar="NAME", help="the guest's user name")
    group.add_argument("--domain", metavar="NAME", help="the guest's DNS domain")
    group.add_argument("--screen", metavar="WxH", help="screen size, e.g. 1920x1080")
    group.add_argument("--hypervisor", action="store_true", help="set the CPUID hypervisor bit (look like a VM)")
    group.add_argument(
        "--missing-files",
        choices=["not_found", "default_content"],
        help="a file the scenario does not provide: not found (default, as Windows) or Speakeasy's default content",
    )
    for name, kind in ENVIRONMENT_FLAGS.items():
        from emulator.environment import GuestEnvironment

        field = GuestEnvironment.model_fields[name]
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            dest=f"guest_{name}",
            metavar="N" if kind is int else "TEXT",
            help=f"{field.description} (default {field.default})",
        )


def _apply_environment_flags(plan: ReplayPlan, args: argparse.Namespace) -> ReplayPlan:
    """The plan with the guest-machine flags applied on top of the scenario's (or the defaults)."""
    from pydantic import ValidationError

    from emulator.environment import guest_name_problem, split_arguments

    update: dict[str, object] = {}
    guest: dict[str, object] = {}
    if args.argv is not None:
        try:
            guest["argv"] = split_arguments(args.argv)
        except ValueError as err:
            raise UsageError(f"--argv {args.argv!r}: {err}") from err
    if args.env:
        env = dict(plan.env)
        for spec in args.env:
            name, sep, value = spec.partition("=")
            if not sep or not name:
                raise UsageError(f"--env {spec!r}: expected NAME=VALUE")
            env[name] = value
        update["env"] = env
    for name in ("hostname", "user", "domain"):
        value = getattr(args, name)
        if value is not None:
            problem = guest_name_problem(value)
            if problem is not None:
                raise UsageError(f"--{name} {value[:40]!r}: not a valid name ({problem})")
            update[name] = value
    if "user" in update:  # a bare sample sits on the user's desktop: follow the new user
        prefix = f"C:\\Users\\{plan.user}\\"
        if plan.emu_path.startswith(prefix):
            update["emu_path"] = f"C:\\Users\\{update['user']}\\" + plan.emu_path[len(prefix) :]
    if args.screen is not None:
        width, sep, height = args.screen.lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise UsageError(f"--screen {args.screen!r}: expected WIDTHxHEIGHT, e.g. 1920x1080")
        guest["screen"] = (int(width), int(height))
    if args.hypervisor:
        guest["hypervisor"] = True
    if args.missing_files is not None:
        guest["missing_files"] = args.missing_files
    for name in ENVIRONMENT_FLAGS:
        value = getattr(args, f"guest_{name}")
        if value is not None:
            guest[name] = value
    if guest:
        try:
            update["guest"] = plan.guest.model_validate({**plan.guest.model_dump(), **guest})
        except ValidationError as err:
            first = err.errors()[0]
            raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from err
    return plan.model_copy(update=update) if update else plan
