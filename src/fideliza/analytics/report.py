"""The loyalty report (issue 4, part 8): one self-contained HTML page and the figures behind it.

    from fideliza.analytics import open_files
    from fideliza.analytics.report import build_report

    with open_files("purchases.csv", surveys="surveys.csv", timezone="Europe/Madrid") as data:
        report = build_report(data, as_of="2025-07-01", lang="en")
    Path("report.html").write_text(report.html)
    Path("report.json").write_text(report.json())

Every number the page shows is formatted from `Report.figures` (JSON-ready: ints, floats,
strings, None), which holds the rows of the analytics functions it calls:

- `summary`: `buyer_summary`; `active_customers`, `defection` and `cohort_retention`: the
  monthly tables; all on the purchases before `as_of`;
- `usage_groups`: `usage_groups` over the 365 days before `as_of`;
- `rfm_segments`: `rfm_segments` at `as_of`;
- `loyalty_matrix` and `satisfied_defection` (only with surveys): judged at `as_of` minus the
  rule's follow-up window (`meta.loyalty_as_of`), so that whether a member bought again is
  known from the data before `as_of`; None without surveys;
- `referral_acquisition` (only with referrals): the monthly share of new customers referred;
- `points_liability` and `breakage_cohorts` (only with the ledger's entries and lots, and a
  `cost_per_point`): `expected_liability` per tier and `breakage_cohorts`, at `as_of`;
- `customer_lifetime_value`: BG/NBD + Gamma-Gamma fitted on the buyers before `as_of`, their
  CLV over `clv_months` at `monthly_discount_rate` (see `report_clv`); None when the data
  cannot support the models (`meta.clv_not_estimable` says why);
- `reward_cost` (only with redemptions and a `cost_per_point`): `reward_cost` per month of the
  redemptions before `as_of`; `effort_vs_reward` (also needs the entries): per tier, over the
  data before `as_of`.

A section whose input is absent is None in the figures and left off the page.

Money (decimals in the analytics) becomes float in the figures; dates are ISO strings; a null
or NaN rate is None. The charts are inline SVG, the style inline CSS: no script, no external
resource.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from fideliza.analytics.behaviour import buyer_summary_of
from fideliza.analytics.economics import breakage_cohorts, expected_liability
from fideliza.analytics.frames import quiet_ibis, to_frame
from fideliza.analytics.lifetime import buyer_days_expr, check_clv_options
from fideliza.analytics.loyalty import DEFAULT_LOYALTY_RULE
from fideliza.analytics.periods import local_timestamp, within
from fideliza.analytics.report_i18n import LABELS, Lang
from fideliza.analytics.report_sections import (
    USAGE_WINDOW_DAYS,
    Figures,
    SharedTables,
    clv_section,
    figure_rows,
    loyalty_sections,
    purchase_sections,
)
from fideliza.analytics.rewards import effort_vs_reward, reward_cost
from fideliza.analytics.sources import AnalyticsData
from fideliza.core.errors import ValidationError

__all__ = ["SECTIONS", "Lang", "Report", "build_report", "default_as_of"]

# The sections, in the order they are computed (a progress callback gets each name).
SECTIONS = (
    "summary",
    "active_customers",
    "defection",
    "usage_groups",
    "rfm_segments",
    "loyalty_matrix",
    "cohort_retention",
    "referral_acquisition",
    "customer_lifetime_value",
    "points_liability",
    "rewards",
)
Moment = date | datetime | str


@dataclass(frozen=True, slots=True)
class Report:
    """The HTML page and the figures it shows (`json()` is what `fideliza report` writes)."""

    html: str
    figures: Figures

    def json(self) -> str:
        return json.dumps(self.figures, indent=2, ensure_ascii=False, allow_nan=False)


def default_as_of(data: AnalyticsData) -> date:
    """The day after the last purchase (so that the whole history is in the report)."""
    with quiet_ibis():
        last = data.transactions.occurred_at.max().to_pyarrow().as_py()
    if last is None:
        raise ValidationError("has no purchases", field="transactions")
    return (last + timedelta(days=1)).date()


def build_report(
    data: AnalyticsData,
    *,
    as_of: Moment | None = None,
    lang: Lang | str = Lang.ES,
    progress: Callable[[str], None] | None = None,
    cost_per_point: Decimal | None = None,
    clv_months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> Report:
    """Computes every figure of the report on `data` and renders the page in `lang`.

    `as_of` (a date means its local midnight; default: the day after the last purchase) cuts
    the data: only purchases before it are read. `progress`, when given, is called with each
    section's name (see SECTIONS) before the section is computed (the CLV section's buyer
    summary is read with the summary, and its models fitted meanwhile). `cost_per_point`
    (what one point costs the program, in money) enables the liability and reward sections.
    `clv_months` and `monthly_discount_rate` set the CLV horizon and discounting.
    """
    language = _lang(lang)
    check_clv_options(clv_months, monthly_discount_rate)
    moment = local_timestamp(default_as_of(data) if as_of is None else as_of, field="as_of")
    notify = progress or (lambda _section: None)
    tx = within(data.transactions, end=moment)
    loyalty_at = moment - timedelta(days=DEFAULT_LOYALTY_RULE.follow_up_days)
    figures: Figures = {
        "meta": {
            "as_of": moment.isoformat(),
            "timezone": data.timezone,
            "lang": language.value,
            "usage_window": [
                (moment - timedelta(days=USAGE_WINDOW_DAYS)).isoformat(),
                moment.isoformat(),
            ],
            "loyalty_as_of": loyalty_at.isoformat() if data.surveys is not None else None,
            "cost_per_point": None if cost_per_point is None else str(cost_per_point),
            "clv_not_estimable": None,
        }
    }
    shared = SharedTables(tx, as_of=moment, backend=data.backend)
    # The CLV models are fitted (numpy, one core) while the database answers the sections
    # after the summary: the database alone leaves a core idle for part of each query.
    with ThreadPoolExecutor(max_workers=1) as fitting:
        try:
            notify("summary")
            figures["summary"] = figure_rows(to_frame(buyer_summary_of(shared.buyers)))[0]
            with quiet_ibis():
                buyer_days = buyer_days_expr(tx, as_of=moment).to_pyarrow()
                segments = shared.rfm.select("member_id", "segment").to_pyarrow()
            clv = fitting.submit(
                clv_section, buyer_days, segments, clv_months, monthly_discount_rate
            )
            purchase_sections(figures, tx, shared, moment, notify)
            loyalty_sections(figures, data, tx, shared, moment, notify)
            notify("customer_lifetime_value")
            figures["customer_lifetime_value"], figures["meta"]["clv_not_estimable"] = clv.result()
        finally:
            shared.release()
    figures.update(_economics(data, tx, moment, cost_per_point, notify))
    return Report(html=render_html(figures, language), figures=figures)


def _economics(
    data: AnalyticsData,
    tx: Any,
    moment: datetime,
    cost: Decimal | None,
    notify: Callable[[str], None],
) -> Figures:
    """The liability, breakage and reward sections; None where an input is absent."""
    figures: Figures = dict.fromkeys(
        ("points_liability", "breakage_cohorts", "reward_cost", "effort_vs_reward")
    )
    notify("points_liability")
    if cost is not None and data.entries is not None and data.lots is not None:
        figures["points_liability"] = figure_rows(
            expected_liability(data.entries, data.lots, as_of=moment, cost_per_point=cost,
                               by_tier=True)
        )  # fmt: skip
        figures["breakage_cohorts"] = figure_rows(breakage_cohorts(data.lots, as_of=moment))
    notify("rewards")
    if cost is not None and data.redemptions is not None:
        figures["reward_cost"] = figure_rows(
            reward_cost(data.redemptions, cost_per_point=cost, end=moment)
        )
        if data.entries is not None:
            figures["effort_vs_reward"] = figure_rows(
                effort_vs_reward(tx, data.entries, cost_per_point=cost, end=moment)
            )
    return figures


# --- figures ----------------------------------------------------------------------------------


def _lang(value: Lang | str) -> Lang:
    try:
        return Lang(value)
    except ValueError:
        choices = ", ".join(lang.value for lang in Lang)
        raise ValidationError(f"must be one of {choices}, got {value!r}", field="lang") from None


# --- page -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:980px;color:#1f2933;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}
.meta{color:#616e7c}.kpis{display:flex;flex-wrap:wrap;gap:.8rem}
.kpi{background:#f0f4f8;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.kpi b{display:block;font-size:1.35rem}.kpi span{font-size:.85rem;color:#52606d}
svg{display:block;max-width:100%;height:auto;margin:.6rem 0}
svg text{font-size:11px;fill:#323f4b}.note{color:#52606d}
table.figures{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
table.figures th,table.figures td{padding:.25rem .6rem;border-bottom:1px solid #d9e2ec;
text-align:right}table.figures th:first-child,table.figures td:first-child{text-align:left}
"""
_BLUE = "#2680c2"
_ORANGE = "#de911d"
_QUADRANT_COLOURS = {
    "apostles": "#3ebd93",
    "mercenaries": "#f7c948",
    "hostages": "#9aa5b1",
    "terrorists": "#e12d39",
}


def render_html(figures: Figures, lang: Lang | str) -> str:
    """The page, from `figures` only (so every number shown is in the JSON)."""
    language = _lang(lang)
    t = LABELS[language.value]
    meta = figures["meta"]
    parts = [
        f'<!DOCTYPE html><html lang="{language.value}"><head><meta charset="utf-8">',
        f"<title>{escape(t['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(t['title'])}</h1>",
        f'<p class="meta">{escape(t["generated"])}: {escape(meta["as_of"])} · '
        f"{escape(t['timezone'])}: {escape(meta['timezone'])}</p>",
        _summary(figures["summary"], t),
        _section(t["active_customers"], _active_chart(figures["active_customers"], t), "active"),
        _section(t["defection"], _defection_chart(figures["defection"], t), "defection"),
        _section(t["usage_groups"], _usage_chart(figures["usage_groups"], t), "usage"),
        _section(t["rfm_segments"], _rfm_chart(figures["rfm_segments"], t), "rfm"),
        _loyalty(figures, t),
        _section(t["cohort_retention"], _cohort_chart(figures["cohort_retention"], t), "cohorts"),
        _referrals(figures.get("referral_acquisition"), t),
        _lifetime_value(figures.get("customer_lifetime_value"), figures["meta"], t),
        _liability(figures.get("points_liability"), figures.get("breakage_cohorts"), t),
        _rewards(figures.get("reward_cost"), figures.get("effort_vs_reward"), t),
        "</body></html>",
    ]
    return "\n".join(parts)


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _summary(summary: dict[str, Any], t: dict[str, str]) -> str:
    cells = [
        ("buyers", _num(summary["buyers"])),
        ("one_time_buyers", _num(summary["one_time_buyers"])),
        ("repeat_customers", _num(summary["repeat_customers"])),
        ("repeat_purchase_rate", _pct(summary["repeat_purchase_rate"])),
        ("transactions", _num(summary["transactions"])),
        ("revenue", _num(summary["revenue"], 2)),
        ("purchases_per_buyer", _num(summary["purchases_per_buyer"], 2)),
    ]
    kpis = "".join(
        f'<div class="kpi"><b>{value}</b><span>{escape(t[key])}</span></div>'
        for key, value in cells
    )
    return _section(t["summary"], f'<div class="kpis">{kpis}</div>', "summary")


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, content: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "") -> str:
    tip = f"<title>{escape(title)}</title>" if title else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
        f'fill="{fill}">{tip}</rect>'
    )


def _legend(x: float, y: float, items: list[tuple[str, str]]) -> list[str]:
    out = []
    for i, (colour, label) in enumerate(items):
        out.append(_rect(x + i * 150, y - 9, 10, 10, colour))
        out.append(_text(x + i * 150 + 14, y, label))
    return out


def _empty(t: dict[str, str], label: str) -> str:
    return _svg(400, 30, [_text(5, 20, t["no_data"])], label)


def _active_chart(rows: list[dict[str, Any]], t: dict[str, str]) -> str:
    label = t["active_customers"]
    if not rows:
        return _empty(t, label)
    width, height, left, top, bottom = 900, 280, 50, 30, 50
    plot_w, plot_h = width - left - 10, height - top - bottom
    peak = max(row["active_customers"] for row in rows) or 1
    step = plot_w / len(rows)
    body = _legend(left, 15, [(_BLUE, t["active"]), (_ORANGE, t["new"])])
    body.append(_text(left - 5, top + 4, _num(peak), "end"))
    body.append(_text(left - 5, top + plot_h, "0", "end"))
    every = max(1, math.ceil(len(rows) / 18))
    for i, row in enumerate(rows):
        x = left + i * step
        active, new = row["active_customers"], row["new_customers"]
        h = plot_h * active / peak
        tip = f"{row['period']}: {t['active']} {_num(active)}, {t['new']} {_num(new)}"
        body.append(_rect(x + 1, top + plot_h - h, step * 0.8, h, _BLUE, tip))
        hn = plot_h * new / peak
        body.append(_rect(x + 1, top + plot_h - hn, step * 0.4, hn, _ORANGE, tip))
        if i % every == 0:
            body.append(_text(x + step * 0.4, height - bottom + 15, row["period"][:7], "middle"))
    return _svg(width, height, body, label)


def _defection_chart(rows: list[dict[str, Any]], t: dict[str, str]) -> str:
    label = t["defection"]
    known = [(i, row) for i, row in enumerate(rows) if row["defection_rate"] is not None]
    if not known:
        return _empty(t, label)
    width, height, left, top, bottom = 900, 260, 50, 20, 40
    plot_w, plot_h = width - left - 20, height - top - bottom
    step = plot_w / max(len(rows) - 1, 1)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#9aa5b1"/>',
        _text(left - 5, top + 4, "100%", "end"),
        _text(left - 5, top + plot_h, "0%", "end"),
    ]
    points = [(left + i * step, top + plot_h * (1 - row["defection_rate"])) for i, row in known]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    body.append(f'<polyline points="{path}" fill="none" stroke="{_BLUE}" stroke-width="2"/>')
    for (x, y), (_, row) in zip(points, known, strict=True):
        tip = (
            f"{row['period']}: {_pct(row['defection_rate'])} "
            f"({_num(row['defected'])}/{_num(row['active_previous'])})"
        )
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_BLUE}"><title>{escape(tip)}'
            "</title></circle>"
        )
    every = max(1, math.ceil(len(rows) / 18))
    for i, row in enumerate(rows):
        if i % every == 0:
            body.append(_text(left + i * step, height - 10, row["period"][:7], "middle"))
    return _svg(width, height, body, label)


def _hbars(
    rows: list[tuple[str, list[tuple[float, str, str]]]], label: str, legend: list[tuple[str, str]]
) -> str:
    """Horizontal bars: one group per row, one bar (share 0–1, text, colour) per series."""
    width, left, bar = 900, 190, 14
    top = 28 if legend else 8
    group = bar * max(len(series) for _, series in rows) + 10
    height = top + group * len(rows) + 5
    plot_w = width - left - 90
    body = _legend(left, 15, legend) if legend else []
    for r, (name, series) in enumerate(rows):
        y = top + r * group
        body.append(_text(left - 8, y + bar * len(series) / 2 + 4, name, "end"))
        for s, (share, text, colour) in enumerate(series):
            w = plot_w * share
            body.append(_rect(left, y + s * bar, w, bar - 2, colour, f"{name}: {text}"))
            body.append(_text(left + w + 4, y + s * bar + bar - 4, text))
    return _svg(width, height, body, label)


def _usage_chart(rows: list[dict[str, Any]], t: dict[str, str]) -> str:
    label = t["usage_groups"]
    if not any(row["customers"] for row in rows):
        return _empty(t, label)
    bars = [
        (
            t[row["usage_group"]],
            [
                (
                    row["customer_share"] or 0.0,
                    f"{_pct(row['customer_share'])} ({_num(row['customers'])})",
                    _BLUE,
                ),
                (
                    row["revenue_share"] or 0.0,
                    f"{_pct(row['revenue_share'])} ({_num(row['revenue'], 2)})",
                    _ORANGE,
                ),
            ],
        )
        for row in rows
    ]
    legend = [(_BLUE, t["customer_share"]), (_ORANGE, t["revenue_share"])]
    return _hbars(bars, label, legend)


def _rfm_chart(rows: list[dict[str, Any]], t: dict[str, str]) -> str:
    label = t["rfm_segments"]
    if not any(row["customers"] for row in rows):
        return _empty(t, label)
    bars = [
        (
            t.get(row["segment"], row["segment"]),
            [
                (
                    row["customer_share"] or 0.0,
                    f"{_num(row['customers'])} ({_pct(row['customer_share'])})",
                    _BLUE,
                ),
                (
                    row["revenue_share"] or 0.0,
                    f"{_num(row['revenue'], 2)} ({_pct(row['revenue_share'])})",
                    _ORANGE,
                ),
            ],
        )
        for row in rows
    ]
    legend = [(_BLUE, t["customers"]), (_ORANGE, t["revenue"])]
    return _hbars(bars, label, legend)


def _loyalty(figures: Figures, t: dict[str, str]) -> str:
    rows = figures["loyalty_matrix"]
    if rows is None:
        return _section(
            t["loyalty_matrix"], f'<p class="note">{escape(t["no_surveys"])}</p>', "loyalty"
        )
    width, height, left, top = 900, 360, 150, 30
    cell_w, cell_h = (width - left - 10) / 2, (height - top - 10) / 2
    body = [
        _text(left + cell_w / 2, 18, t["strong"], "middle"),
        _text(left + cell_w * 1.5, 18, t["weak"], "middle"),
        _text(left - 10, top + cell_h / 2, t["satisfied"], "end"),
        _text(left - 10, top + cell_h * 1.5, t["dissatisfied"], "end"),
    ]
    for row in rows:
        col = 0 if row["strong"] else 1
        line = 0 if row["satisfied"] else 1
        x, y = left + col * cell_w, top + line * cell_h
        name = t[row["quadrant"]]
        body.append(_rect(x + 2, y + 2, cell_w - 4, cell_h - 4, _QUADRANT_COLOURS[row["quadrant"]]))
        lines = [
            (name, ' font-weight="bold" style="font-size:15px"'),
            (f"{t['customers']}: {_num(row['customers'])} ({_pct(row['customer_share'])})", ""),
            (f"{t['revenue']}: {_num(row['revenue'], 2)} ({_pct(row['revenue_share'])})", ""),
            (f"{t['defection_rate']}: {_pct(row['defection_rate'])}", ""),
        ]
        for k, (content, extra) in enumerate(lines):
            body.append(
                _text(x + cell_w / 2, y + cell_h / 2 - 24 + k * 18, content, "middle", extra)
            )
    chart = _svg(width, height, body, t["loyalty_matrix"])
    satisfied = figures["satisfied_defection"]
    note = (
        f'<p class="note">{escape(t["loyalty_judged"])}: '
        f"{escape(str(figures['meta']['loyalty_as_of']))} · "
        f"{escape(t['satisfied_defection_rate'])}: "
        f"{_pct(satisfied['satisfied_defection_rate'])} "
        f"({_num(satisfied['satisfied_defected'])}/{_num(satisfied['satisfied_customers'])})</p>"
    )
    return _section(t["loyalty_matrix"], chart + note, "loyalty")


def _heat(value: float) -> str:
    """White (0) to blue (1)."""
    v = min(max(value, 0.0), 1.0)
    r, g, b = (int(255 + (c - 255) * v) for c in (38, 128, 194))
    return f"#{r:02x}{g:02x}{b:02x}"


def _cohort_chart(rows: list[dict[str, Any]], t: dict[str, str]) -> str:
    label = t["cohort_retention"]
    if not rows:
        return _empty(t, label)
    cohorts = list(dict.fromkeys(row["cohort"] for row in rows))
    offsets = max(row["offset"] for row in rows) + 1
    left, top, cell_h = 130, 36, 20
    cell_w = max(24.0, min(48.0, (900 - left) / offsets))
    width = int(left + cell_w * offsets + 5)
    height = top + cell_h * len(cohorts) + 5
    body = [_text(left, 12, t["offset"]), _text(5, 30, t["cohort"])]
    for offset in range(offsets):
        body.append(_text(left + (offset + 0.5) * cell_w, 30, str(offset), "middle"))
    sizes: dict[str, int] = {}
    for row in rows:
        r = cohorts.index(row["cohort"])
        sizes[row["cohort"]] = row["cohort_size"]
        x, y = left + row["offset"] * cell_w, top + r * cell_h
        share = row["retention"] or 0.0
        tip = f"{row['cohort'][:7]} +{row['offset']}: {_pct(row['retention'])}"
        tip += f" ({_num(row['active_customers'])}/{_num(row['cohort_size'])})"
        body.append(_rect(x, y, cell_w - 1, cell_h - 1, _heat(share), tip))
        colour = ' fill="#ffffff"' if share > 0.55 else ""
        percent = "–" if row["retention"] is None else f"{row['retention'] * 100:.0f}"
        body.append(
            _text(
                x + cell_w / 2, y + cell_h - 6, percent, "middle", colour + ' style="font-size:9px"'
            )
        )
    for r, cohort in enumerate(cohorts):
        body.append(_text(5, top + r * cell_h + cell_h - 6, f"{cohort[:7]} ({sizes[cohort]})"))
    return _svg(width, height, body, label)


# --- referrals, liability, rewards (left off when their input is absent) -----------------------

_GREEN = "#3ebd93"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="figures"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _share_bars(rows: list[tuple[str, float | None, str]], label: str, colour: str = _BLUE) -> str:
    """One bar per row: (name, share of the largest value, text shown)."""
    if not rows:
        return _svg(400, 30, [_text(5, 20, "–")], label)
    return _hbars([(name, [(share or 0.0, text, colour)]) for name, share, text in rows], label, [])


def _scaled(values: list[float | None]) -> list[float | None]:
    peak = max((v for v in values if v is not None), default=0.0) or 1.0
    return [None if v is None else max(v, 0.0) / peak for v in values]


def _referrals(rows: list[dict[str, Any]] | None, t: dict[str, str]) -> str:
    if rows is None:
        return ""
    label = t["referral_acquisition"]
    bars = [
        (str(row["period"])[:7], row["referral_share"], _pct(row["referral_share"])) for row in rows
    ]
    return _section(label, _share_bars(bars, label, _GREEN), "referrals")


def _tier_name(value: Any, t: dict[str, str]) -> str:
    return t["no_tier"] if value is None else str(value)


def _liability(
    tiers: list[dict[str, Any]] | None, cohorts: list[dict[str, Any]] | None, t: dict[str, str]
) -> str:
    if tiers is None or cohorts is None:
        return ""
    label = t["points_liability"]
    shares = _scaled([row["liability"] for row in tiers])
    chart = _share_bars(
        [
            (_tier_name(row["tier"], t), share, _num(row["liability"], 2))
            for row, share in zip(tiers, shares, strict=True)
        ],
        label,
    )
    table = _table(
        [t["tier"], t["members"], t["outstanding_points"], t["liability"], t["breakage_rate"],
         t["net_liability"]],
        [
            [_tier_name(row["tier"], t), _num(row["members"]), _num(row["outstanding_points"]),
             _num(row["liability"], 2), _pct(row["breakage_rate"]), _num(row["net_liability"], 2)]
            for row in tiers
        ],
    )  # fmt: skip
    breakage = _table(
        [t["cohort"], t["issued"], t["expired"], t["mature"], t["breakage_rate"]],
        [
            [str(row["cohort"])[:7], _num(row["issued"]), _num(row["expired"]),
             "✓" if row["mature"] else "", _pct(row["breakage_rate"])]
            for row in cohorts
        ],
    )  # fmt: skip
    return _section(
        label, chart + table + f"<h3>{escape(t['breakage_cohorts'])}</h3>" + breakage, "liability"
    )


def _rewards(
    costs: list[dict[str, Any]] | None, tiers: list[dict[str, Any]] | None, t: dict[str, str]
) -> str:
    if costs is None:
        return ""
    label = t["reward_cost"]
    months: dict[str, float] = {}
    for row in costs:
        month = str(row["period"])[:7]
        months[month] = months.get(month, 0.0) + (row["cost"] or 0.0)
    shares = _scaled(list(months.values()))
    chart = _share_bars(
        [
            (month, share, _num(total, 2))
            for (month, total), share in zip(months.items(), shares, strict=True)
        ],
        label,
        _ORANGE,
    )
    table = _table(
        [t["period"], t["reward_kind"], t["redemptions"],
         t["points"], t["cost"]],
        [
            [str(row["period"])[:7], t["no_kind"] if row["reward_kind"] is None
             else str(row["reward_kind"]), _num(row["redemptions"]), _num(row["points"]),
             _num(row["cost"], 2)]
            for row in costs
        ],
    )  # fmt: skip
    body = _section(label, chart + table, "reward-cost")
    if tiers is None:
        return body
    effort = t["effort_vs_reward"]
    shares = _scaled([row["spend_per_reward_unit"] for row in tiers])
    chart = _share_bars(
        [
            (_tier_name(row["tier"], t), share, _num(row["spend_per_reward_unit"], 2))
            for row, share in zip(tiers, shares, strict=True)
        ],
        effort,
    )
    table = _table(
        [t["tier"], t["members"], t["spend"], t["points_earned"], t["reward_value"],
         t["spend_per_reward_unit"], t["points_per_currency_unit"]],
        [
            [_tier_name(row["tier"], t), _num(row["members"]), _num(row["spend"], 2),
             _num(row["points_earned"]), _num(row["reward_value"], 2),
             _num(row["spend_per_reward_unit"], 2), _num(row["points_per_currency_unit"], 2)]
            for row in tiers
        ],
    )  # fmt: skip
    return body + _section(effort, chart + table, "effort")


def _lifetime_value(clv: dict[str, Any] | None, meta: dict[str, Any], t: dict[str, str]) -> str:
    label = t["clv"]
    if clv is None:
        reason = meta.get("clv_not_estimable") or ""
        note = f'<p class="note">{escape(t["clv_not_estimable"])}: {escape(reason)}</p>'
        return _section(label, note, "clv") if reason else ""
    cells = [
        ("total_clv", _num(clv["total_clv"], 2)),
        ("mean_clv", _num(clv["mean_clv"], 2)),
        ("expected_purchases_per_customer", _num(clv["expected_purchases_per_customer"], 2)),
        ("mean_probability_alive", _pct(clv["mean_probability_alive"])),
        ("clv_horizon", _num(clv["horizon_months"])),
        ("discount_rate", _pct(clv["monthly_discount_rate"])),
    ]
    kpis = "".join(
        f'<div class="kpi"><b>{value}</b><span>{escape(t[key])}</span></div>'
        for key, value in cells
    )
    g, s = clv["bgnbd"], clv["gamma_gamma"]
    models = (
        f'<p class="note">{escape(t["clv_models"])}: BG/NBD r={g["r"]:.3f} α={g["alpha"]:.3f} '
        f"a={g['a']:.3f} b={g['b']:.3f} · Gamma-Gamma p={s['p']:.3f} q={s['q']:.3f} "
        f"γ={s['gamma']:.3f}</p>"
    )
    alive = _share_bars(
        [
            (f"{row['from']:.1f}–{row['to']:.1f}", row["share"], _num(row["customers"]))
            for row in clv["alive_distribution"]
        ],
        t["alive_distribution"],
        _GREEN,
    )
    segments = clv["by_segment"]
    shares = _scaled([row["clv"] for row in segments])
    by_segment = _share_bars(
        [
            (t.get(row["segment"], row["segment"]), share, _num(row["clv"], 2))
            for row, share in zip(segments, shares, strict=True)
        ],
        t["clv_by_segment"],
        _ORANGE,
    )
    segment_table = _table(
        [t["rfm_segments"], t["customers"], t["clv"], t["clv_share"], t["mean_clv"],
         t["mean_probability_alive"], t["expected_purchases"]],
        [
            [t.get(row["segment"], row["segment"]), _num(row["customers"]), _num(row["clv"], 2),
             _pct(row["clv_share"]), _num(row["mean_clv"], 2),
             _pct(row["mean_probability_alive"]), _num(row["expected_purchases"], 2)]
            for row in segments
        ],
    )  # fmt: skip
    top = _table(
        [t["member"], t["rfm_segments"], t["frequency"], t["recency_days"], t["age_days"],
         t["probability_alive"], t["expected_purchases"], t["expected_spend"], t["clv"]],
        [
            [str(row["member_id"]), t.get(row["segment"], row["segment"]),
             _num(row["frequency"]), _num(row["recency_days"]), _num(row["age_days"]),
             _pct(row["probability_alive"]), _num(row["expected_purchases"], 2),
             _num(row["expected_average_spend"], 2), _num(row["clv"], 2)]
            for row in clv["top_customers"]
        ],
    )  # fmt: skip
    body = (
        f'<div class="kpis">{kpis}</div>{models}'
        f"<h3>{escape(t['alive_distribution'])}</h3>{alive}"
        f"<h3>{escape(t['clv_by_segment'])}</h3>{by_segment}{segment_table}"
        f"<h3>{escape(t['top_customers'])}</h3>{top}"
    )
    return _section(label, body, "clv")
