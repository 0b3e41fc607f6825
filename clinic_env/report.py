"""A self-contained HTML report of graded consultations: scores by dimension and axis, every transcript, and each
rubric criterion marked met or not met with the verifier's explanation."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;font-size:.9rem;vertical-align:top}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.doctor{background:#eef6ff} .patient{background:#fafafa} .role{font-weight:600;width:5.5rem}
.met{color:#0a6e31;font-weight:600} .notmet{color:#888} .neg.met{color:#b00020}
.note{color:#666;font-size:.85rem} pre{white-space:pre-wrap;margin:0;font-family:inherit}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean score overall and per axis/dimension over episodes (unclipped means of per-episode scores)."""
    sums: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:
        sums["score"].append(ep["score"])
        for k, v in ep.get("score_breakdown", {}).items():
            sums[k].append(v)
    return {k: sum(v) / len(v) for k, v in sorted(sums.items())}


def render_html(
    episodes: Sequence[dict[str, Any]], *, title: str = "clinic-env consultations", note: str = ""
) -> str:
    summary = summarize(episodes)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{_CSS}</style>"
        f"</head><body><h1>{_esc(title)}</h1>"
    ]
    if note:
        parts.append(f"<p class='note'>{_esc(note)}</p>")
    parts.append("<p class='note'>Research software, not for clinical use.</p>")
    parts.append("<table><tr><th>metric</th><th>mean over episodes</th></tr>")
    for k, v in summary.items():
        parts.append(f"<tr><td>{_esc(k)}</td><td class='num'>{v:.3f}</td></tr>")
    parts.append("</table><table><tr><th>case</th><th>ended</th><th>turns</th><th>score</th></tr>")
    for i, ep in enumerate(episodes):
        parts.append(
            f"<tr><td><a href='#ep{i}'>{_esc(ep['case_id'])}</a></td><td>{_esc(ep['termination_reason'])}</td>"
            f"<td class='num'>{ep['turns']}</td><td class='num'>{ep['score']:.3f}</td></tr>"
        )
    parts.append("</table>")
    for i, ep in enumerate(episodes):
        parts.append(
            f"<h2 id='ep{i}'>{_esc(ep['case_id'])}: score {ep['score']:.3f} ({_esc(ep['termination_reason'])})</h2>"
        )
        parts.append("<table>")
        for m in ep["messages"]:
            role = "patient" if m["role"] == "user" else "doctor"
            parts.append(
                f"<tr class='{role}'><td class='role'>{role}</td><td><pre>{_esc(m['content'])}</pre></td></tr>"
            )
        parts.append("</table><table><tr><th>points</th><th>criterion</th><th>met</th><th>why</th></tr>")
        for c in ep["rubric"]:
            cls = ("met" if c["met"] else "notmet") + (" neg" if c["points"] < 0 else "")
            parts.append(
                f"<tr><td class='num'>{c['points']:+d}</td><td>{_esc(c['text'])}</td>"
                f"<td class='{cls}'>{'met' if c['met'] else 'not met'}</td>"
                f"<td class='note'>{_esc(c.get('explanation', ''))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def write_html_report(episodes: Sequence[dict[str, Any]], path: str | Path, **kwargs: Any) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(render_html(episodes, **kwargs), encoding="utf-8")
    tmp.replace(p)
    return p
