"""The configuration reference (docs/configuration.md), generated from `edge.config`.

Every key of every section comes from its dataclass: the type from its annotation, the range,
choices or pattern from its metadata, the default from the field, and its meaning from the
comment beside it or the comment lines just above it in edge/config.py, else from its comment in
the shipped config, deploy/edge.toml (beside the key, and the indented comment lines under it).
The section's docstring introduces its table. `python -m edge.config_reference` (`make
config-reference`) rewrites the page; a test fails when the page and the code disagree.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import re
import sys
import tokenize
from pathlib import Path
from typing import Any, get_type_hints

from edge import config

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
SHIPPED = ROOT / "deploy" / "edge.toml"
TYPES = {bool: "bool", int: "int", float: "float", str: "string", list[str]: "list of strings"}
HEADER = """# Configuration reference

<!-- Generated from edge/config.py by `make config-reference`: edit the code, not this page. -->

The runtime reads one TOML file (`python -m edge run --config edge.toml`; `deploy/edge.toml` is
the shipped one, every key at its default, with a comment each). Every key is optional and
checked at start: an unknown key, a wrong type or a value out of range stops the runtime with one
line naming the key. Any key can be set on the command line as
`section.key=value` (e.g. `source.fps=15`). Relative paths are relative to the working directory
(`/var/lib/edge-vision` for the installed service).

Several cameras in one process: a `[[cameras]]` entry per camera instead of `[source]`. An entry
takes every `[source]` key, and may set the keys marked *per camera* of `[detector]`,
`[colorizer]` and `[output]` as `detector.KEY`, `colorizer.KEY`, `output.KEY`; everything else is
shared by all cameras (`deploy/cameras.example.toml`).
"""


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key as the reference shows it."""

    name: str
    type: str
    allowed: str
    default: str
    meaning: str
    per_camera: bool


def comments() -> dict[str, dict[str, str]]:
    """Each config dataclass's fields' comments: class name -> field name -> comment text."""
    source = inspect.getsource(config)
    by_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            by_line[token.start[0]] = token.string.lstrip("#").strip()
    found: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, str] = {}
        previous_end = node.lineno
        for statement in node.body:
            end = statement.end_lineno or statement.lineno
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                lines = range(previous_end + 1, end + 1)
                fields[statement.target.id] = " ".join(by_line[n] for n in lines if n in by_line)
            previous_end = end
        found[node.name] = fields
    return found


def shipped_comments(text: str) -> dict[str, dict[str, str]]:
    """The shipped config's comment on each key: section -> key -> text (the comment beside the
    key and the indented comment lines right under it)."""
    found: dict[str, dict[str, str]] = {}
    section, key = "", ""
    for line in text.splitlines():
        if match := re.fullmatch(r"\[(\w+)\]\s*", line):
            section, key = match[1], ""
            found[section] = {}
        elif match := re.fullmatch(r"(\w+)\s*=.*?\s#\s?(.*)", line):
            key = match[1]
            found.setdefault(section, {})[key] = match[2].strip()
        elif (match := re.fullmatch(r"\s+#\s?(.*)", line)) and key:
            found[section][key] += " " + match[1].strip()
        else:
            key = ""
    return found


def allowed(meta: Any) -> str:
    """A field's range, choices or pattern in words ("" when any value of its type goes)."""
    if "range" in meta:
        low, high = meta["range"]
        return f"{low} to {high}" if high is not None else f"at least {low}"
    if "choices" in meta:
        return ", ".join(f"`{choice}`" for choice in meta["choices"])
    return str(meta.get("what", ""))


def toml_value(value: Any) -> str:
    """A default as it is written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list):
        return json.dumps(value)
    return repr(value)


def section_keys(
    name: str, cls: type[Any], notes: dict[str, str], shipped: dict[str, str]
) -> list[Key]:
    """The keys of one section, in the dataclass's order; `notes` are their comments in the
    code, `shipped` those in the shipped config."""
    hints = get_type_hints(cls)
    defaults = cls()
    own = config.CAMERA_KEYS.get(name, ())
    return [
        Key(
            name=field.name,
            type=TYPES[hints[field.name]],
            allowed=allowed(field.metadata),
            default=toml_value(getattr(defaults, field.name)),
            meaning=notes.get(field.name) or shipped.get(field.name, ""),
            per_camera=name == "source" or field.name in own,
        )
        for field in dataclasses.fields(cls)
    ]


def sections() -> dict[str, tuple[type[Any], list[Key]]]:
    """Every section of `Config` but `cameras` (a list of tables of the other sections' keys):
    its dataclass and keys."""
    notes = comments()
    shipped = shipped_comments(SHIPPED.read_text())
    hints = get_type_hints(config.Config)
    return {
        field.name: (
            cls,
            section_keys(field.name, cls, notes.get(cls.__name__, {}), shipped.get(field.name, {})),
        )
        for field in dataclasses.fields(config.Config)
        if field.name != "cameras"
        for cls in [hints[field.name]]
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The whole reference page."""
    parts = [HEADER]
    for name, (cls, keys) in sections().items():
        intro = " ".join(inspect.cleandoc(cls.__doc__ or "").split())
        parts.append(f"\n## `[{name}]`\n\n{intro}\n")
        parts.append("| key | type | allowed | default | meaning |\n|---|---|---|---|---|")
        for key in keys:
            camera = " *(per camera)*" if key.per_camera and name != "source" else ""
            parts.append(
                f"| `{key.name}`{camera} | {key.type} | {_cell(key.allowed)} | "
                f"`{_cell(key.default)}` | {_cell(key.meaning)} |"
            )
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page (default docs/configuration.md)."""
    parser = argparse.ArgumentParser(prog="python -m edge.config_reference", description=__doc__)
    parser.add_argument("--output", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    args.output.write_text(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
