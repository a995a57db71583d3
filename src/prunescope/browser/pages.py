"""The feature pages as one self-contained HTML file: styles and the search script inline,
no fetch, no external font, so it works offline inside ``snakemake --report``.

Each condition is a section of cards, grouped by firing-rate quintile, survived features
beside destroyed ones. A card shows a feature's numbers and, for each of its strongest
dense contexts, the tokens twice: shaded by the feature's activation on the dense model's
activations, then on the pruned model's, on one scale (the feature's strongest dense
activation), so a paler second line is what pruning took away.
"""

from __future__ import annotations

import html
import math
import re

SHADE = (214, 96, 33)
"""The shading colour (orange); its opacity is the activation over the card's scale."""
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
h3{font-size:1em;color:#555;margin:1.2em 0 .4em}
.summary{color:#444;max-width:60em}
.search{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:1}
.search input{font-size:1em;padding:.3em;width:16em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(30em,1fr));gap:.8em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em .8em;background:#fafafa}
.card.survived{border-left:5px solid #2a7a3b} .card.destroyed{border-left:5px solid #b3261e}
.card h4{margin:0 0 .3em;font-size:1em} .status{font-weight:normal;color:#555}
.numbers{font-size:.85em;color:#333;margin:.2em 0 .4em} .numbers span{margin-right:1em}
.context{font-family:ui-monospace,monospace;font-size:.8em;margin:.35em 0;line-height:1.6}
.context .side{display:inline-block;width:4.5em;color:#777}
.tok{white-space:pre;border-radius:2px}
.tok.peak{outline:1px solid #555}
.hist{display:block;margin:.2em 0}
.empty{color:#777;font-style:italic}
.partner{margin-top:.5em;padding-top:.3em;border-top:1px dashed #ccc;font-size:.85em;color:#444}
"""
SCRIPT = """
function filterCards(text){
  const wanted=text.trim();
  document.querySelectorAll('.card').forEach(card=>{
    card.style.display=(!wanted||card.dataset.feature===wanted)?'':'none';
  });
}
"""


def shaded_tokens(tokens: list[str], values: list[float | None], scale: float, peak: int) -> str:
    """Tokens as spans shaded by ``value / scale`` (a title gives the value where the
    feature fires); ``None`` marks a token outside the context."""
    spans = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        if value is None:
            continue
        alpha = min(max(value / scale, 0.0), 1.0) if scale > 0 else 0.0
        # most tokens of a context are silent: unshaded spans keep the page small
        shade = (
            f' style="background:rgba({SHADE[0]},{SHADE[1]},{SHADE[2]},{alpha:.2f})" '
            f'title="{value:.3g}"'
            if value > 0
            else ""
        )
        peak_class = " peak" if index == peak else ""
        spans.append(f'<span class="tok{peak_class}"{shade}>{html.escape(visible(token))}</span>')
    return "".join(spans)


def visible(token: str) -> str:
    """A token as one line: line breaks and tabs drawn as symbols, not laid out."""
    return token.replace("\r", "").replace("\n", "⏎").replace("\t", "⇥")


def histogram_svg(dense: list[int], pruned: list[int], width: int = 240, height: int = 36) -> str:
    """Two overlaid bar histograms of a feature's activations (dense grey, pruned orange)."""
    top = max(max(dense, default=0), max(pruned, default=0), 1)
    step = width / max(len(dense), 1)
    bars = []
    for counts, colour, shift in ((dense, "#888", 0.0), (pruned, "#d66021", step / 2)):
        for index, count in enumerate(counts):
            if count:
                h = max(height * count / top, 1.0)
                x = index * step + shift
                bars.append(
                    f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{step / 2:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
    return (
        f'<svg class="hist" width="{width}" height="{height}" role="img" '
        f'aria-label="activation histogram, dense grey, pruned orange">{"".join(bars)}</svg>'
    )


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def context_html(context: dict, scale: float, sides=("dense", "pruned")) -> str:
    """One context: its tokens shaded on the dense line, then on the pruned line."""
    lines = "".join(
        f'<div><span class="side">{side}</span>'
        f"{shaded_tokens(context['tokens'], context[side], scale, context['peak'])}</div>"
        for side in sides
    )
    return f'<div class="context">{lines}</div>'


def partner_html(partner: dict | None, cosine) -> str:
    """The dense feature's best partner in another seed's pruned SAE, with its own
    strongest contexts in the pruned model."""
    if not partner:
        return ""
    shown = "".join(
        context_html(c, partner["scale"], sides=("pruned",)) for c in partner["contexts"]
    )
    return (
        f'<div class="partner">its cross-seed partner in the pruned SAE: feature '
        f"{partner['feature']} (decoder cosine {_number(cosine)}), on its own strongest "
        f"contexts{shown or ': none'}</div>"
    )


def card_html(card: dict) -> str:
    """One feature: its numbers, its histogram, and each context dense then pruned."""
    numbers = [
        ("firing rate", _number(card["dense_rate"]), _number(card["pruned_rate"])),
        ("activation correlation", _number(card["correlation"]), None),
        ("under matched noise", _number(card["control_correlation"]), None),
        ("decoder cosine, paired-init", _number(card.get("paired_cos")), None),
        ("cross-seed", _number(card.get("cross_cos")), None),
    ]
    if "ablation_kl" in card:
        numbers.append(("ablation KL", _number(card["ablation_kl"]), None))
    shown = "".join(
        f"<span>{name} {dense}" + (f" → {pruned}" if pruned is not None else "") + "</span>"
        for name, dense, pruned in numbers
    )
    contexts = "".join(context_html(c, card["scale"]) for c in card["contexts"])
    contexts = contexts or '<div class="empty">never fires on the eval tokens</div>'
    contexts += partner_html(card.get("partner"), card.get("cross_cos"))
    return (
        f'<div class="card {card["status"]}" data-feature="{card["feature"]}" '
        f'data-condition="{html.escape(card["condition"])}">'
        f'<h4>feature {card["feature"]} <span class="status">{card["status"]}, '
        f"quintile {card['quintile']}</span></h4>"
        f'<div class="numbers">{shown}</div>'
        f"{histogram_svg(card['hist_dense'], card['hist_pruned'])}{contexts}</div>"
    )


def anchor(name: str) -> str:
    """An element id for a section name: letters, digits and dashes only."""
    return "s-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def contents(sections: list[dict]) -> str:
    """Links to every section, first on the page."""
    links = "".join(
        f'<li><a href="#{anchor(s["condition"])}">{html.escape(s["condition"])}</a></li>'
        for s in sections
    )
    return f'<nav><ul class="contents">{links}</ul></nav>'


def feature_page(title: str, intro: str, sections: list[dict]) -> str:
    """The whole page: ``sections`` hold a ``condition``, a ``summary`` sentence and
    ``groups``, each a heading and its cards (``card_html``'s dicts)."""
    body = []
    for section in sections:
        name = html.escape(section["condition"])
        body.append(f'<h2 id="{anchor(section["condition"])}">{name}</h2>')
        body.append(f'<p class="summary">{html.escape(section["summary"])}</p>')
        for heading, cards in section["groups"]:
            body.append(f"<h3>{html.escape(heading)}</h3>")
            body.append('<div class="grid">' + "".join(card_html(c) for c in cards) + "</div>")
        if not section["groups"]:
            body.append('<p class="empty">no alive feature to show</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script>"
        f'</head><body><h1>{html.escape(title)}</h1><p class="summary">{html.escape(intro)}</p>'
        '<div class="search"><label>feature id <input id="feature-search" type="search" '
        'oninput="filterCards(this.value)" placeholder="e.g. 17"></label></div>'
        + contents(sections)
        + "".join(body)
        + "</body></html>"
    )
