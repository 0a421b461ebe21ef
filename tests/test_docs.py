"""README is a short guide whose links all land, and every docs page is on the site.

`make docs` (MkDocs, strict) checks the links between docs pages; README is not part of the site,
so its links to docs pages, their headings and repository files are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 250
# [text](target) and ![alt](target); a target ends at a space (a title follows) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
CODE_BLOCK = re.compile(r"^```.*?^```|^(?: {4}|\t).*?$", re.M | re.S)


def relative_links(text: str) -> list[str]:
    """The link and image targets of Markdown `text` that are paths in this repository."""
    prose = CODE_BLOCK.sub("", text)
    targets = LINK.findall(prose)
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def anchors(page: Path) -> set[str]:
    """The ids MkDocs (and GitHub) give the headings of `page`."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", CODE_BLOCK.sub("", page.read_text()), re.M)
    return {slugify(h.replace("`", ""), "-") for h in headings}


def nav_pages(nav: list[object]) -> list[str]:
    """Every page file named in mkdocs.yml's `nav`, nested sections included."""
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += nav_pages(value)
        elif isinstance(value, str) and not re.match(r"[a-z]+:", value):
            pages.append(value)
    return pages


def test_readme_is_a_short_guide() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, more than {README_MAX_LINES}: move the detail to a page "
        "in docs/ and link it"
    )


@pytest.mark.parametrize("target", relative_links((ROOT / "README.md").read_text()))
def test_every_readme_link_lands(target: str) -> None:
    path, _, anchor = target.partition("#")
    file = ROOT / path
    assert file.exists(), f"README.md links {target}, but {path} does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in anchors(file), f"README.md links {target}: {path} has no such heading"


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if p not in listed]
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}: add each under nav"
    absent = [p for p in listed if not (DOCS / p).is_file()]
    assert not absent, f"mkdocs.yml's nav lists pages docs/ lacks: {absent}"


def test_the_link_checks_see_links_and_headings(tmp_path: Path) -> None:
    """The helpers find what they must, so the tests above cannot pass by finding nothing."""
    text = (
        'See [a](docs/a.md#two-words), ![b](b.png "title") and [web](https://x.org).\n\n'
        "    [in code](no.md)\n\n```\n[fenced](no.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md#two-words", "b.png"]
    page = tmp_path / "a.md"
    page.write_text("# Title\n\n## `Two` words\n\n```\n# not a heading\n```\n")
    assert anchors(page) == {"title", "two-words"}
    nav = [{"Home": "index.md"}, {"Group": [{"A": "a.md"}, "b.md"]}, {"Out": "https://x.org"}]
    assert nav_pages(nav) == ["index.md", "a.md", "b.md"]
