"""`chainreplay variant`: build a variant of a scenario from parameters."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emulator.cli.common import (
    E_OK,
    UsageError,
)


def _add_variant_parser(sub: Any) -> None:
    variant = sub.add_parser(
        "variant",
        allow_abbrev=False,
        help="build a variant of a scenario from parameters (mingw-w64)",
    )
    variant.add_argument("scenario", help="scenario folder that declares variant parameters (variant.toml)")
    variant.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    variant.add_argument("--transport", help="shorthand for --set transport=...")
    variant.add_argument("--arch", help="shorthand for --set arch=...")
    variant.add_argument("--name", help="name of the new scenario (default: the output folder's name)")
    variant.add_argument("-o", "--output", required=True, metavar="DIR", help="new scenario folder")
    variant.add_argument("--list", action="store_true", help="list the parameters and their defaults, build nothing")


def _variant(args: argparse.Namespace) -> int:
    from emulator.variant import VariantError, build_variant, describe_parameters, parse_settings

    folder = Path(args.scenario)
    settings_text = list(args.set)
    if args.transport:
        settings_text.append(f"transport={args.transport}")
    if args.arch:
        settings_text.append(f"arch={args.arch}")
    try:
        if args.list:
            print(describe_parameters(folder))
            return E_OK
        settings = parse_settings(settings_text)
        result = build_variant(folder, Path(args.output), settings, name=args.name)
    except VariantError as err:
        raise UsageError(str(err)) from err
    print(f"built {result.folder} ({result.name}): {', '.join(f'{k}={v}' for k, v in result.parameters.items())}")
    print(f"SHA256SUMS: {result.manifest_sha256}")
    return E_OK
