"""``crampwatch config show``: the effective configuration, every key with its
default and unit."""

from __future__ import annotations

from crampwatch.detector.config import DetectorConfig
from crampwatch.tools._run import load_config

HELP = "show the effective configuration (every key, its value and what it means)"


def add_arguments(p) -> None:
    p.add_argument("action", choices=["show"], help="show: print the effective config as TOML")
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    print("[detector]")
    for name, doc, default in DetectorConfig.field_docs():
        value = getattr(cfg, name)
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        note = "" if value == default else f"  (default {default!r})"
        print(f"# {doc}{note}")
        print(f"{name} = {shown}")
    return 0
