"""A trained model's report: PNG plots (matplotlib, Agg) and one self-contained HTML page.

Plots: the precision/recall curve on the test range with each rule's point on the same
events, the calibration (reliability) diagram, and the feature importance (gain).
"""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
import numpy.typing as npt

from riskstream.models import quality

PLOTS = ("pr.png", "calibration.png", "importance.png")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(
    meta: dict[str, Any], prob: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> dict[str, bytes]:
    """The three PNG plots, by file name."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    metrics = meta["metrics"]
    out: dict[str, bytes] = {}
    curve = quality.pr_curve(prob, y)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(
        np.r_[0.0, curve.recall],
        np.r_[1.0, curve.precision],
        drawstyle="steps-post",
        label=f"model (AUC-PR {metrics['auc_pr']:.3f})",
    )
    for rule, point in metrics.get("rules", {}).items():
        ax.scatter([point["recall"]], [point["precision"]], marker="o", label=f"rule {rule}")
    ax.axhline(metrics["base_rate"], color="grey", linestyle=":", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision / recall on the test range")
    ax.legend(fontsize=7, loc="lower left")
    out["pr.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    bins = metrics["calibration"]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o")
    ax.set_xlabel("predicted probability (calibrated)")
    ax.set_ylabel("observed fraud rate")
    ax.set_title("Calibration on the test range")
    out["calibration.png"] = _png(fig)

    imp = metrics["importance"][:15][::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(imp) + 1)))
    ax.barh([d["feature"] for d in imp], [d["gain"] for d in imp])
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance")
    out["importance.png"] = _png(fig)
    return out


def _rows(items: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items)


def page(name: str, meta: dict[str, Any]) -> str:
    """The HTML report (plots referenced by file name, next to it)."""
    m = meta["metrics"]
    par = m["precision_at_recall"]
    summary = [
        ("model", f"{name} (trained {meta['trained_at']}, {meta['trees']} trees)"),
        ("spec", f"{meta['spec_name']} (fingerprint {meta['fingerprint']})"),
        ("train range", f"{meta['train_range']['from']} – {meta['train_range']['to']}"),
        (
            "calibration range",
            f"{meta['calibration_range']['from']} – {meta['calibration_range']['to']}",
        ),
        ("test range", f"{meta['test_range']['from']} – {meta['test_range']['to']}"),
        ("test events", f"{m['events']:,} ({m['fraud']:,} fraud, base rate {m['base_rate']:.2%})"),
        ("AUC-PR", f"{m['auc_pr']:.4f}"),
        *[(f"precision at {r}% recall", f"{p:.3f}") for r, p in par.items()],
        ("Brier score", f"{m['brier']:.5f}"),
    ]
    rules = "".join(
        f"<tr><td>{html.escape(r)}</td><td>{p['hits']:,}</td><td>{p['precision']:.3f}</td>"
        f"<td>{p['recall']:.3f}</td></tr>"
        for r, p in m.get("rules", {}).items()
    )
    cal = "".join(
        f"<tr><td>{b['lo']:.1f}–{b['hi']:.1f}</td><td>{int(b['events']):,}</td>"
        f"<td>{b['predicted']:.3f}</td><td>{b['observed']:.3f}</td></tr>"
        for b in m["calibration"]
    )
    imp = "".join(
        f"<tr><td>{html.escape(d['feature'])}</td><td>{d['gain']:.1f}</td><td>{d['splits']}</td></tr>"
        for d in m["importance"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>model {html.escape(name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
img{{max-width:48%;margin:4px}}</style></head><body>
<h1>Model <code>{html.escape(name)}</code></h1>
<table>{_rows(summary)}</table>
<h2>Against the rules, on the same test events</h2>
<table><tr><th>rule</th><th>hits</th><th>precision</th><th>recall</th></tr>{rules}</table>
<div><img src="pr.png" alt="precision/recall"><img src="calibration.png" alt="calibration"></div>
<h2>Calibration (test range)</h2>
<table><tr><th>probability</th><th>events</th><th>mean predicted</th><th>observed rate</th></tr>{cal}</table>
<h2>Feature importance</h2><img src="importance.png" alt="importance">
<table><tr><th>feature</th><th>gain</th><th>splits</th></tr>{imp}</table>
</body></html>
"""


def render(
    name: str, meta: dict[str, Any], prob: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> dict[str, bytes]:
    """Every report file by name: the plots and ``report.html``."""
    files = plots(meta, prob, y)
    files["report.html"] = page(name, meta).encode()
    return files
