"""MkDocs hooks of the documentation site (mkdocs.yml `hooks:`): pages generated from the code, one source each.

    <!-- sksearch:reference study -->    the study-file key reference, from the pydantic models
    <!-- sksearch:reference space -->    the space-file key reference
    <!-- sksearch:include BENCHMARKS.md -->  a file of the repository root, its links made relative to docs/
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- sksearch:(reference|include) (\S+) -->")


def _expand(match: re.Match) -> str:
    what, arg = match.groups()
    if what == "reference":
        from sksearch.schema import reference_markdown

        return reference_markdown(arg)
    text = (ROOT / arg).read_text()
    if arg != "README.md":
        text = re.sub(r"^# .*\n", "", text, count=1)  # the page has its own title
    return text.replace("](docs/", "](").replace("](BENCHMARKS.md", "](benchmarks.md")


def on_page_markdown(markdown: str, **_: object) -> str:
    return MARKER.sub(_expand, markdown)
