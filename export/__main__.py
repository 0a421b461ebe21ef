"""`python -m export COMMAND`: data collection, training, evaluation and ONNX export.

Only the chosen command's module is imported, so `quantize` starts on a Jetson with
requirements-jetson.txt alone, without the training packages (TensorFlow, ultralytics,
scikit-image) the other commands need. Without a command (`--help`) every module is tried; a
command whose packages are missing here is listed as such and fails with one line naming them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge.cli import Register, main
from edge.errors import EdgeError

# Each command and the module that registers it.
COMMANDS = {
    "data": "export.data",
    "train": "export.train",
    "onnx": "export.onnx_export",
    "evaluate": "export.evaluate",
    "adapt": "export.adapt",
    "yolo": "export.yolo",
    "reid": "export.reid",
    "quantize": "export.quantize",
}


def lazy(command: str) -> Register:
    """A `register` that imports the command's module only when it is called."""

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        try:
            module = importlib.import_module(COMMANDS[command])
        except ImportError as exc:
            missing = exc.name or str(exc)
            parser = subparsers.add_parser(command, help=f"(needs {missing}, not installed here)")
            parser.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            parser.set_defaults(func=lambda args: unavailable(command, missing))
            return
        module.register(subparsers)

    return register


def unavailable(command: str, missing: str) -> None:
    """Raises EdgeError: the command's packages are not installed."""
    raise EdgeError(
        f"{missing} is not installed, which `export {command}` needs: run it where "
        "`pip install -r requirements-export.txt` was run (the training machine)"
    )


def registers(argv: Sequence[str]) -> list[Register]:
    """The chosen command's `register` alone when `argv` names one, else every command's."""
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    return [lazy(command) for command in ([chosen] if chosen else COMMANDS)]


if __name__ == "__main__":
    description = (__doc__ or "").split("\n\n")[0]
    sys.exit(main("export", description, registers(sys.argv[1:]), sys.argv[1:]))
