"""README.md is a front page, and every relative link of it and of docs/ resolves: to a file
that exists and, with a ``#fragment``, to a heading of that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_BYTES = 20_000
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _slugs(path: Path) -> list[str]:
    return [slug(heading) for heading in _HEADING.findall(_FENCE.sub("", path.read_text()))]


def _anchors(path: Path) -> set[str]:
    return set(_slugs(path))


def _relative_links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    return [link for link in _LINK.findall(text) if not re.match(r"[a-z]+:", link)]


def test_the_readme_is_a_front_page_with_the_two_commands():
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) <= MAX_README_BYTES
    assert "make run" in readme.read_text() and "make test" in readme.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path):
    assert _relative_links(page) or page.name != "README.md", "the front page links to docs/"
    for link in _relative_links(page):
        target, _, fragment = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} names no file"
        if fragment:
            assert fragment in _anchors(path), f"{page.name}: {link} names no heading of {path.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_two_headings_of_a_page_share_an_anchor(page: Path):
    # GitHub would give the second one "-1", and a link meant for it would land on the first.
    slugs = _slugs(page)
    assert len(slugs) == len(set(slugs)), sorted({s for s in slugs if slugs.count(s) > 1})


def test_slugs_follow_github():
    assert slug("roost serve and roost.toml") == "roost-serve-and-roosttoml"
    assert slug("What Roost guarantees, and how") == "what-roost-guarantees-and-how"
    assert slug("The shop example, step by step") == "the-shop-example-step-by-step"
