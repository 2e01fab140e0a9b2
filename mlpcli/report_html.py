"""The HTML of ``mlp report``: one self-contained page, from plain string templates.

The page needs nothing but itself: the style is inline, every figure is a PNG inlined as a
``data:image/png;base64,...`` URI, there is no script and no link to anything outside the
page (its table of contents points at its own sections), so it reads the same opened from
disk or sent by mail. Every piece of text goes through ``escape`` here, and only here: escaped
(a class name or config value such as ``<script>`` shows as text), with the bytes of names
that are not UTF-8 shown as \\xNN (the page is UTF-8).
"""

import base64
from dataclasses import dataclass
from html import escape as escape_html

from mlpcli.errors import printable

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430;
       margin: 0 auto; max-width: 1080px; padding: 0 24px 48px; background: #fff; }
header { border-bottom: 2px solid #2f6db3; padding: 18px 0 10px; margin-bottom: 8px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d5dbe3; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #566070; font-size: 13px; margin: 2px 0; overflow-wrap: anywhere; }
nav { font-size: 14px; margin: 8px 0 0; }
nav a { margin-right: 14px; color: #2f6db3; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13.5px; }
th, td { border: 1px solid #d5dbe3; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { background: #e8f4e8; font-weight: 600; }
.verdict { border-left: 4px solid #c0392b; background: #fbeeee; padding: 6px 10px; margin: 8px 0; }
.verdict.calm { border-color: #2e8b57; background: #edf7f0; }
.note { color: #566070; font-size: 13px; }
figure { display: inline-block; margin: 6px 14px 12px 0; vertical-align: top; }
figure img { max-width: 100%; width: 480px; border: 1px solid #e3e7ee; }
figcaption { font-size: 12.5px; color: #566070; }
pre { background: #f6f8fa; border: 1px solid #e3e7ee; padding: 10px; overflow-x: auto; font-size: 12.5px; }
"""


def escape(value):
    return escape_html(printable(str(value)))


@dataclass
class Section:
    anchor: str  # the id the table of contents links to (letters and dashes: ours, not the user's)
    title: str
    body: str  # HTML made by this module's functions


def page(title, meta, sections):
    """The whole document: a header (``title`` and the ``meta`` lines), a table of contents
    and the sections."""
    contents = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    header = (f"<header><h1>{escape(title)}</h1>" + "".join(f'<p class="meta">{escape(m)}</p>' for m in meta)
              + f"<nav>{contents}</nav></header>")
    body = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{header}{body}</body></html>\n")


def heading(text):
    return f"<h3>{escape(text)}</h3>"


def paragraph(text, kind=None):
    """A paragraph; ``kind``: "verdict" (a finding), "calm" (a finding that all is well) or
    "note" (small print)."""
    css = {"verdict": "verdict", "calm": "verdict calm", "note": "note", None: None}[kind]
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def preformatted(text):
    return f"<pre>{escape(text)}</pre>"


def bullet_list(items, kind=None):
    css = ' class="note"' if kind == "note" else ""
    return f"<ul{css}>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def table(header, rows, numeric=(), chosen=None):
    """A table of text cells; the columns in ``numeric`` align right; the row at index
    ``chosen`` is highlighted."""
    def cells(tag, row):
        return "".join(f'<{tag} class="num">{escape(v)}</{tag}>' if i in numeric
                       else f"<{tag}>{escape(v)}</{tag}>" for i, v in enumerate(row))

    head = f"<tr>{cells('th', header)}</tr>" if header else ""
    body = "".join(f'<tr{" class=chosen" if i == chosen else ""}>{cells("td", row)}</tr>'
                   for i, row in enumerate(rows))
    return f"<table>{head}{body}</table>"


def figure(png, caption):
    """A PNG file's bytes, inline, with its caption (also its alternative text)."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")
