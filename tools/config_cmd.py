"""``crampwatch config show``: the effective configuration, every key with its
meaning, unit and default, as a TOML file one can save and edit."""

from __future__ import annotations

import json
import sys

from crampwatch.tools.capture.config import CaptureConfig, default_config_path, load_config

HELP = "show the effective configuration (every key, its value and what it means)"
DESCRIPTION = """Print the configuration in effect as TOML: the [capture] table (the overnight
capture daemon) and the [detector] table (detection, shared by capture and replay), each key
with what it means, its unit and its default.  Without --config the file
$CRAMPWATCH_CONFIG, or crampwatch.toml in $CRAMPWATCH_HOME or in the user config directory,
is read if it exists."""


def add_arguments(p) -> None:
    p.add_argument("action", choices=["show"], help="show: print the effective config as TOML")
    p.add_argument("--config", metavar="FILE", help="TOML config file ([capture], [detector])")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a key (capture or detector) for this run")


def toml_value(value) -> str:
    """A Python value as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)    # JSON strings are TOML basic strings
    if isinstance(value, dict):                          # an inline table
        items = ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return repr(value)


def run(args, out=None) -> int:
    from crampwatch.detector.config import DetectorConfig
    from crampwatch.tools import paths

    out = out or sys.stdout
    loaded = load_config(args.config, args.overrides)
    where = loaded.path or f"no config file ({default_config_path()} does not exist): defaults"
    print(f"# crampwatch configuration in effect, from {where}", file=out)
    print("# Every key is optional; save this as a file and pass it with --config.", file=out)
    in_effect = {"out_dir": loaded.capture.out_dir or paths.recordings_dir(),
                 "db_path": loaded.capture.db_path or paths.db_path()}
    for table, cfg, docs in (("capture", loaded.capture, CaptureConfig.field_docs()),
                             ("detector", loaded.detector, DetectorConfig.field_docs())):
        print(f"\n[{table}]", file=out)
        for name, doc, default in docs:
            value = getattr(cfg, name)
            print(f"# {doc}", file=out)
            note = f"# default: {toml_value(default)}"
            if value != default:
                note += "  (changed)"
            if name in in_effect:
                note += f"; in effect: {in_effect[name]}"
            print(note, file=out)
            print(f"{name} = {toml_value(value)}", file=out)
    return 0
