"""Render a report (a list of blocks) as Markdown (figures linked from figures/) and as one self-contained HTML
file (figures embedded as base64 data URIs, inline CSS, no external resources)."""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field

from reports.tables import Table


@dataclass
class Block:
    kind: str  # "h2", "p", "table", "figure", "warnings", "list"
    text: str = ""
    table: Table | None = None
    items: list[str] = field(default_factory=list)
    figure: str = ""  # file name under figures/
    png: bytes = b""


# ---------------------------------------------------------------------------------------------------- Markdown


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in t.columns) + " |",
             "|" + "|".join("---" if i == 0 else "--:" if _numeric(t, i) else "---" for i in range(len(t.columns)))
             + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    out = "\n".join(lines)
    if t.notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in t.notes)
    return out


def _numeric(t: Table, i: int) -> bool:
    return bool(t.rows) and all(r[i][:1].isdigit() or r[i][:1] in "–<−≤" for r in t.rows)


def to_markdown(title: str, blocks: list[Block]) -> str:
    parts = [f"# {title}"]
    for b in blocks:
        if b.kind == "h2":
            parts.append(f"## {b.text}")
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "table":
            parts.append(md_table(b.table))
        elif b.kind == "figure":
            parts.append(f"![{b.text}](figures/{b.figure})\n\n*{b.text}*")
        elif b.kind in ("warnings", "list"):
            prefix = "- ⚠ " if b.kind == "warnings" else "- "
            parts.append("\n".join(prefix + i for i in b.items))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .35em .6em; vertical-align: top; }
th { background: #f3f5f7; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
ul.notes { font-size: .85em; color: #555; margin-top: .2em; }
div.warnings { background: #fff6e0; border: 1px solid #f0c36d; border-radius: 4px; padding: .5em 1em; }
div.warnings li { margin: .2em 0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
"""


def html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = []
    for row in t.rows:
        cells = "".join(f'<td class="num">{html.escape(c)}</td>' if i and _numeric(t, i) else
                        f"<td>{html.escape(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    out = (f'<table id="{html.escape(t.name)}" class="report-table"><thead><tr>{head}</tr></thead>'
           f'<tbody>{"".join(body)}</tbody></table>')
    if t.notes:
        out += '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in t.notes) + "</ul>"
    return out


def to_html(title: str, blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "h2":
            parts.append(f"<h2>{html.escape(b.text)}</h2>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "table":
            parts.append(html_table(b.table))
        elif b.kind == "figure":
            data = base64.b64encode(b.png).decode("ascii")
            parts.append(f'<figure><img id="fig-{html.escape(b.figure.rsplit(".", 1)[0])}" '
                         f'src="data:image/png;base64,{data}" alt="{html.escape(b.text)}">'
                         f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
        elif b.kind == "warnings":
            parts.append('<div class="warnings"><ul>' + "".join(f"<li>⚠ {html.escape(i)}</li>" for i in b.items)
                         + "</ul></div>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------------- CSV


def to_csv(t: Table) -> str:
    cols = list(dict.fromkeys(k for r in t.records for k in r)) or t.columns
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in t.records:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in cols})
    return buf.getvalue()
