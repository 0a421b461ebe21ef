"""docs/configuration.md against the config dataclasses it is generated from."""

from __future__ import annotations

import dataclasses

import pytest

from edge import config
from edge.config_reference import PAGE, markdown, sections, shipped_comments

FIX = "run `make config-reference` and commit docs/configuration.md"


def test_the_reference_page_is_what_the_code_generates() -> None:
    assert PAGE.read_text() == markdown(), f"{PAGE} disagrees with edge/config.py: {FIX}"


def test_every_key_of_every_section_has_a_row_and_a_meaning() -> None:
    page = sections()
    hints = dataclasses.fields(config.Config)
    assert set(page) == {f.name for f in hints} - {"cameras"}
    for name, (cls, keys) in page.items():
        assert [k.name for k in keys] == [f.name for f in dataclasses.fields(cls)]
        for key in keys:
            assert key.meaning, (
                f"config key '{name}.{key.name}' has no meaning for the reference: add a comment "
                f"beside it in edge/config.py (or in deploy/edge.toml), then {FIX}"
            )


@pytest.mark.parametrize(
    ("field", "allowed", "default"),
    [
        ("source.fps", "0 to 240", "0"),
        ("source.format", "`BGR`, `GRAY8`", '"BGR"'),
        ("detector.classes", "", '["Normal"]'),
        ("output.overlay", "", "true"),
        ("output.keep_gb", "at least 0", "20.0"),
        ("mqtt.device", "a name without '/', '+', '#', NUL", '""'),
    ],
)
def test_a_key_shows_its_range_and_its_default_as_toml(
    field: str, allowed: str, default: str
) -> None:
    section, name = field.split(".")
    key = next(k for k in sections()[section][1] if k.name == name)
    assert (key.allowed, key.default) == (allowed, default)


def test_shipped_comments_take_the_indented_lines_under_a_key() -> None:
    text = (
        "[a]\n# a block comment, nobody's\nx = 1   # first\n        # and more\n"
        'y = "#" \n[b]\nz = 2  # zed\n'
    )
    assert shipped_comments(text) == {"a": {"x": "first and more"}, "b": {"z": "zed"}}
