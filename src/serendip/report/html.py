"""Assemble a self-contained HTML report: inline CSS, images as base64 PNG, no network.

The document model is deliberately small: a :class:`Report` holds
:class:`Section` objects, each a list of blocks (paragraphs, notes, figures,
tables, key/value lists). :meth:`Report.render` escapes every piece of text,
so metadata from user files can never inject markup.
"""
from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Report", "Section", "Figure", "TableBlock", "Paragraph", "Note", "KeyValues", "png_data_uri"]

CSS = """
:root { --fg:#222; --muted:#666; --accent:#00798c; --weird:#d1495b; --bg:#fff; --panel:#f6f7f9; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; line-height: 1.45; font-size: 15px; }
header { background: #1d3557; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #d8e2ec; }
nav { background: var(--panel); padding: 8px 32px; border-bottom: 1px solid #ddd; position: sticky; top: 0; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { max-width: 1150px; margin: 0 auto; padding: 8px 32px 48px 32px; }
section { border-bottom: 1px solid #e3e3e3; padding: 12px 0 20px 0; }
h2 { color: #1d3557; margin: 18px 0 8px 0; }
h3 { margin: 14px 0 6px 0; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: var(--panel); }
td.text, th.text { text-align: left; }
.note { background: #fff6e0; border-left: 4px solid #edae49; padding: 8px 12px; margin: 8px 0; }
.kv td:first-child { text-align: left; font-weight: 600; }
.kv td { text-align: left; }
footer { color: var(--muted); font-size: 12px; padding: 16px 32px; }
"""


def png_data_uri(png: bytes | str | os.PathLike) -> str:
    """A ``data:image/png;base64,...`` URI for PNG bytes or a PNG file."""
    if not isinstance(png, (bytes, bytearray)):
        png = Path(png).read_bytes()
    if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image (bad signature)")
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Paragraph:
    text: str

    def render(self) -> str:
        return f"<p>{_esc(self.text)}</p>"


@dataclass
class Note:
    """A highlighted remark, e.g. why a step was skipped."""

    text: str
    kind: str = "note"

    def render(self) -> str:
        return f'<div class="note" data-kind="{_esc(self.kind)}">{_esc(self.text)}</div>'


@dataclass
class Figure:
    """A PNG (bytes or path) embedded inline, with a caption."""

    png: bytes | str | os.PathLike
    caption: str = ""
    alt: str = ""
    name: str = ""

    def render(self) -> str:
        uri = png_data_uri(self.png)
        cap = f"<figcaption>{_esc(self.caption)}</figcaption>" if self.caption else ""
        return (f'<figure data-name="{_esc(self.name)}"><img src="{uri}" alt="{_esc(self.alt or self.caption)}">'
                f"{cap}</figure>")


def _fmt(value: Any, digits: int = 4) -> tuple[str, bool]:
    """Format one cell; returns (text, is_text)."""
    if value is None or (hasattr(np, "ma") and value is np.ma.masked):
        return "", True
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), True
    if isinstance(value, (int, np.integer)):
        return str(int(value)), False
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return "–" if np.isnan(v) else str(v), False
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}", False
        return f"{v:.{digits}g}", False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value), True


@dataclass
class TableBlock:
    """A table from column names and rows (or an astropy Table)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    name: str = ""

    @classmethod
    def from_table(cls, table, columns: Sequence[str] | None = None, caption: str = "", name: str = "",
                   max_rows: int | None = None) -> TableBlock:
        cols = [c for c in (columns or table.colnames) if c in table.colnames and table[c].ndim == 1]
        n = len(table) if max_rows is None else min(len(table), max_rows)
        rows = [[table[c][i] for c in cols] for i in range(n)]
        return cls(cols, rows, caption=caption, name=name)

    def render(self) -> str:
        head = "".join(f'<th class="text">{_esc(c)}</th>' for c in self.columns)
        body = []
        for row in self.rows:
            cells = []
            for v in row:
                text, is_text = _fmt(v)
                cls = ' class="text"' if is_text else ""
                cells.append(f"<td{cls}>{_esc(text)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{_esc(self.caption)}</caption>" if self.caption else ""
        return (f'<table data-name="{_esc(self.name)}">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table>")


@dataclass
class KeyValues:
    """A two-column key/value table."""

    items: Sequence[tuple[str, Any]]
    name: str = ""

    def render(self) -> str:
        rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(_fmt(v)[0])}</td></tr>" for k, v in self.items)
        return f'<table class="kv" data-name="{_esc(self.name)}"><tbody>{rows}</tbody></table>'


@dataclass
class Section:
    """One report section; ``id`` is the HTML anchor (and what tests look for)."""

    id: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, block) -> Section:
        self.blocks.append(block)
        return self

    def subheading(self, text: str) -> Section:
        self.blocks.append(_Raw(f"<h3>{_esc(text)}</h3>"))
        return self

    def render(self) -> str:
        inner = "\n".join(b.render() for b in self.blocks)
        return f'<section id="{_esc(self.id)}">\n<h2>{_esc(self.title)}</h2>\n{inner}\n</section>'


@dataclass
class _Raw:
    markup: str

    def render(self) -> str:
        return self.markup


@dataclass
class Report:
    """A whole report: a title, a subtitle and sections."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    footer: str = ""

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section

    def render(self) -> str:
        nav = "".join(f'<a href="#{_esc(s.id)}">{_esc(s.title)}</a>' for s in self.sections)
        body = "\n".join(s.render() for s in self.sections)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{_esc(self.title)}</h1><p>{_esc(self.subtitle)}</p></header>\n"
            f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n"
            f"<footer>{_esc(self.footer)}</footer>\n</body>\n</html>\n"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Render and write atomically."""
        from .._io import atomic_write_text

        return atomic_write_text(path, self.render())


def iter_blocks(sections: Iterable[Section]):
    for s in sections:
        yield from s.blocks
