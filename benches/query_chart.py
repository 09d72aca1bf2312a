"""Draws the figures of the small-query benchmarks as one SVG: queries/s of point lookups and
of the dashboard query, and peak RSS, by concurrent sessions, for every engine and path
measured (ibarrow in-process, through Flight SQL and HTTP, DuckDB's scanners), per database.

    IBARROW_BENCH_JSON=/tmp/queries.jsonl cargo bench --bench point_queries
    IBARROW_BENCH_JSON=/tmp/queries.jsonl python benches/server_queries.py
    IBARROW_BENCH_JSON=/tmp/queries.jsonl python benches/duckdb_queries.py
    python3 benches/query_chart.py /tmp/queries.jsonl docs/images/small-queries.svg "subtitle"

Reads JSON lines with the keys engine, database, work, sessions, queries_per_sec and
peak_rss_mb; a later line for the same engine, database, work and sessions replaces an earlier
one. Needs only the standard library.
"""

import json
import sys
from html import escape

SESSIONS = [1, 2, 8, 32]
PANELS = [
    ("point lookups", "queries_per_sec", "point lookups on distinct keys, queries/s"),
    ("dashboard query", "queries_per_sec", "repeated dashboard query, queries/s"),
    ("point lookups", "peak_rss_mb", "peak RSS during the lookups, MB"),
]
COLOURS = ["#1f6feb", "#2da44e", "#8250df", "#d4a72c", "#cf222e", "#57606a"]
PANEL_W, PANEL_H, MARGIN = 330, 230, 56


def load(path: str) -> dict:
    figures = {}
    with open(path) as lines:
        for line in lines:
            if line.strip():
                r = json.loads(line)
                figures[(r["engine"], r["database"], r["work"], r["sessions"])] = r
    return figures


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above `value`."""
    if value <= 0:
        return 1.0
    scale = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def panel(out: list, x0: float, y0: float, title: str, bars: dict, engines: list) -> None:
    """Grouped bars: one group per session count, one bar per engine that has the figure."""
    top = nice_ceiling(max([v for group in bars.values() for v in group.values()] or [1]))
    plot_h = PANEL_H - 60
    plot_w = PANEL_W - 50
    left, base = x0 + 44, y0 + 30 + plot_h
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 16}" text-anchor="middle" '
               f'class="title">{escape(title)}</text>')
    for i in range(5):
        value = top * i / 4
        y = base - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" class="grid"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{value:g}</text>')
    group_w = plot_w / len(SESSIONS)
    bar_w = (group_w - 12) / max(len(engines), 1)
    for g, sessions in enumerate(SESSIONS):
        gx = left + g * group_w + 6
        for e, engine in enumerate(engines):
            value = bars.get(sessions, {}).get(engine)
            if value is None:
                continue
            h = plot_h * value / top
            out.append(f'<rect x="{gx + e * bar_w:.1f}" y="{base - h:.1f}" width="{bar_w - 1:.1f}" '
                       f'height="{h:.1f}" fill="{COLOURS[e % len(COLOURS)]}">'
                       f'<title>{escape(engine)}, {sessions} sessions: {value:.0f}</title></rect>')
        out.append(f'<text x="{gx + (group_w - 12) / 2}" y="{base + 14}" '
                   f'text-anchor="middle">{sessions}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{base + 28}" text-anchor="middle">'
               f'concurrent sessions</text>')


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: query_chart.py <results.jsonl> <out.svg> [subtitle]")
    figures = load(sys.argv[1])
    subtitle = sys.argv[3] if len(sys.argv) > 3 else ""
    engines = list(dict.fromkeys(key[0] for key in figures))
    databases = list(dict.fromkeys(key[1] for key in figures))
    if not figures:
        sys.exit(f"{sys.argv[1]} holds no figures: run the benchmarks with IBARROW_BENCH_JSON")
    width = MARGIN + PANEL_W * len(PANELS)
    legend_h = 22 * len(engines)
    height = 70 + PANEL_H * len(databases) + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           '<style>.title{font-weight:bold}.grid{stroke:#d0d7de;stroke-width:1}'
           '.head{font-size:15px;font-weight:bold}</style>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="12" y="22" class="head">Small queries, by concurrent sessions</text>',
           f'<text x="12" y="40">{escape(subtitle)}</text>']
    for d, database in enumerate(databases):
        y0 = 50 + d * PANEL_H
        out.append(f'<text x="14" y="{y0 + PANEL_H / 2}" class="title" '
                   f'transform="rotate(-90 14 {y0 + PANEL_H / 2})" text-anchor="middle">'
                   f'{escape(database)}</text>')
        for p, (work, measure, title) in enumerate(PANELS):
            bars = {}
            for (engine, db, w, sessions), r in figures.items():
                if db == database and w == work and r.get(measure) is not None:
                    bars.setdefault(sessions, {})[engine] = r[measure]
            panel(out, MARGIN / 2 + p * PANEL_W, y0, title, bars, engines)
    y = 60 + PANEL_H * len(databases)
    for e, engine in enumerate(engines):
        out.append(f'<rect x="{MARGIN}" y="{y + 22 * e}" width="14" height="14" '
                   f'fill="{COLOURS[e % len(COLOURS)]}"/>')
        out.append(f'<text x="{MARGIN + 20}" y="{y + 22 * e + 11}">{escape(engine)}</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as svg:
        svg.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
