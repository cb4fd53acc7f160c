"""Charts for the services' pages: server-rendered SVG from pygal (no script, no external file).

One function per kind of chart the pages draw; each returns SVG text to put into a page as is
(pygal escapes the labels). The SVG carries no JavaScript (no tooltips script, no external file):
it shows in any browser and under a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree

import pygal
from pygal.style import Style

STYLE = Style(background="transparent", plot_background="transparent", colors=("#0d6efd", "#dc3545"),
              font_family="system-ui, sans-serif", label_font_size=11, major_label_font_size=11,
              title_font_size=13)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> str:
    """Bars of `values` per label (e.g. GPU-hours per day); every label shown up to 16, else every n-th."""
    chart = pygal.Bar(style=STYLE, height=260, width=760, js=[], disable_xml_declaration=True, show_legend=False,
                      x_label_rotation=-45 if len(labels) > 12 else 0, truncate_label=-1, y_title=unit,
                      show_minor_x_labels=len(labels) <= 16, include_x_axis=True)
    chart.title = title
    chart.x_labels = list(labels)
    chart.x_labels_major = list(labels)[::max(1, len(labels) // 10)]
    chart.add(unit, [round(v, 2) for v in values])
    return svg_without_scripts(chart)


def svg_without_scripts(chart) -> str:
    """pygal always adds a <script> with its tooltip settings; a page needs none of it."""
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in [c for c in parent if str(c.tag).rsplit("}", 1)[-1] == "script"]:
            parent.remove(child)
    return ElementTree.tostring(tree, encoding="unicode")
