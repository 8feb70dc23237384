"""The ``exchange`` command: ``exchange up [--config FILE] [--data-dir DIR]`` and ``exchange config``.

``up`` runs the whole exchange in the foreground (see ``deploy.launcher``);
``config`` prints the configuration ``up`` would use, secrets hidden, and exits.
A bad configuration exits with status 2, any other start-up failure with 1,
each with one line naming what was wrong. (``./exchange test`` is the
repository's bootstrap script, which runs pytest; it is not a subcommand here.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deploy.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description="A high-frequency stock exchange.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start the exchange in the foreground (Ctrl-C stops it)"),
        ("config", "print the configuration that `up` would use, and exit"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--config", type=Path, help="TOML configuration file (default: built-in defaults)")
        cmd.add_argument("--data-dir", type=Path, help="data folder (overrides data_dir; default ./var)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.data_dir is not None:
        os.environ["EXCHANGE_DATA_DIR"] = str(args.data_dir.expanduser().absolute())
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"exchange: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(repr(config))
        return 0

    from deploy.launcher import up

    try:
        return up(config, args.config)
    except ConfigError as exc:
        print(f"exchange: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code is None:
            raise
        print(f"exchange: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
