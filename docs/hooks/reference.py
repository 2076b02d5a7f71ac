"""MkDocs hook: the command-line reference page is generated from the Typer app
(charrnn/cli/reference.py) each time the site is built."""

from __future__ import annotations

MARK = "<!-- generated: charrnn command-line reference -->"


def on_page_markdown(markdown, page, config, files):
    if MARK not in markdown:
        return markdown
    from charrnn.cli.reference import markdown as reference

    generated = reference()
    return markdown.replace(MARK, generated[generated.index("\n## "):])  # the page keeps its own title and intro
