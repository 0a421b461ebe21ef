"""`python -m edge web passwd`: set the web page's password (its scrypt hash, in
`web.password_file`, mode 0600)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from edge.config import load
from edge.errors import EdgeError
from edge.web.auth import MIN_PASSWORD, write_password


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `web` command."""
    parser = subparsers.add_parser("web", help="the web page: set its password")
    actions = parser.add_subparsers(dest="action", required=True)
    passwd = actions.add_parser(
        "passwd", help="set the web page's password",
        description="Asks for the password twice (or reads one line from stdin with --stdin) "
        f"and stores its scrypt hash in web.password_file, mode 0600. At least {MIN_PASSWORD} "
        "characters.",
    )  # fmt: skip
    passwd.add_argument("--config", type=Path, help="the runtime's TOML config (its [web])")
    passwd.add_argument("--stdin", action="store_true", help="read the password from stdin")
    passwd.add_argument(
        "--if-missing", action="store_true", help="do nothing when a password is already set"
    )
    passwd.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config keys to override"
    )
    passwd.set_defaults(func=_passwd)


def _passwd(args: argparse.Namespace) -> None:
    path = Path(load(args.config, args.overrides).web.password_file)
    if args.if_missing and path.exists():
        sys.stdout.write(f"{path}: a password is already set\n")
        return
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New web password: ")
        if getpass.getpass("Again: ") != password:
            raise EdgeError("the two passwords differ: nothing changed")
    write_password(path, password)
    sys.stdout.write(f"{path}: password set\n")
