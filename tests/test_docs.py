"""The README stays a short front page, its quick start intact, and every link in it and in docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    anchors = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_the_readme_is_a_short_front_page_with_the_quick_start():
    text = README.read_text()
    assert len(text.splitlines()) <= 230, "move details into docs/ pages: the README is the front page"
    assert "pip install -e . && python runners/tune.py --framework yolo" in text
    assert 'pip install -e ".[test]" && python -m pytest tests' in text  # .ci/run runs it as written
    assert not re.search(r"\bissues? \d+\b", text), "no issue numbers in the README"
    assert max(map(len, text.splitlines())) <= 120


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
