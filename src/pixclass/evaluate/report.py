"""One self-contained HTML evaluation report: every picture is a base64 PNG inside the page.

The builder takes data only (labels, probs, history, gallery images and their explanation overlays), so it has no
idea how the overlays were made; ``pixclass.explain.report`` gathers the data for a run and calls ``write_report``.
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from pixclass.evaluate import plots
from pixclass.evaluate.bootstrap import bootstrap_cis
from pixclass.evaluate.calibration import apply_temperature, expected_calibration_error, reliability_bins
from pixclass.evaluate.metrics import classification_metrics


@dataclass(frozen=True)
class GalleryItem:
    image: np.ndarray  # (S, S, 3) uint8
    true: str
    pred: str
    confidence: float  # probability of the predicted class
    loss: float  # cross-entropy of the true class
    path: str = ""
    overlay: np.ndarray | None = None  # explanation heatmap over the image, (S, S, 3) uint8


@dataclass(frozen=True)
class ReportInputs:
    title: str
    classes: list[str]
    labels: np.ndarray  # (N,)
    probs: np.ndarray  # (N, K)
    history: list[dict] = field(default_factory=list)  # RUN/history.jsonl rows
    top_losses: list[GalleryItem] = field(default_factory=list)
    misclassified: list[GalleryItem] = field(default_factory=list)
    temperature: float | None = None  # fitted on validation; shown as the calibrated ECE
    explain_method: str = "Grad-CAM"
    notes: list[str] = field(default_factory=list)  # free lines shown under the title (run, split, model)
    robustness: dict | None = None  # RUN/robustness.json, shown as a chart and table when present


def losses(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-image cross-entropy (N,) of the true class."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def top_loss_indices(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-losses(labels, probs), kind="stable")[:k]


def misclassified_indices(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` wrong predictions made with the highest confidence."""
    wrong = np.where(probs.argmax(1) != labels)[0]
    return wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:k]


def most_confused_pairs(cm: list[list[int]] | np.ndarray, classes: list[str], k: int = 10) -> list[dict]:
    """Off-diagonal cells of the confusion matrix, largest first: {true, pred, count, rate (of the true class)}."""
    m = np.asarray(cm)
    rows = m.sum(1)
    cells = [(int(m[i, j]), i, j) for i in range(len(m)) for j in range(len(m)) if i != j and m[i, j] > 0]
    cells.sort(key=lambda c: -c[0])
    return [{"true": classes[i], "pred": classes[j], "count": n, "rate": n / max(int(rows[i]), 1)}
            for n, i, j in cells[:k]]


def summary(labels: np.ndarray, probs: np.ndarray, classes: list[str], temperature: float | None = None) -> dict:
    """Metrics plus ECE, bootstrap intervals and most-confused pairs (the report's numbers)."""
    m = classification_metrics(labels, probs, classes)
    m["ece"] = expected_calibration_error(labels, probs)
    if temperature:
        m["temperature"] = temperature
        m["ece_temperature_scaled"] = expected_calibration_error(labels, apply_temperature(probs, temperature))
    m.update(bootstrap_cis(labels, probs))
    m["most_confused"] = most_confused_pairs(m["confusion_matrix"], list(classes))
    return m


def png_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_uri(path: Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _img(uri: str | None, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{uri}">' if uri else ""


def _gallery(items: list[GalleryItem], method: str) -> str:
    if not items:
        return "<p>None: every image in the split was classified correctly.</p>"
    cards = []
    for it in items:
        ov = _img(png_data_uri(it.overlay), f"{method} for {it.path}", "thumb") if it.overlay is not None else ""
        cards.append(
            f'<figure class="card">{_img(png_data_uri(it.image), it.path or "image", "thumb")}{ov}'
            f"<figcaption>true <b>{html.escape(it.true)}</b><br>pred <b>{html.escape(it.pred)}</b> "
            f"({it.confidence:.2f})<br>loss {it.loss:.2f}<br><span class=path>{html.escape(Path(it.path).name)}"
            f"</span></figcaption></figure>")
    return f'<div class="gallery">{"".join(cards)}</div>'


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}
th{background:#f4f4f4}td:first-child{text-align:left}.plot{max-width:100%;vertical-align:top}
.two .plot{max-width:49%}.kpi{display:flex;gap:1.2em;flex-wrap:wrap}.kpi div{background:#f4f6fa;padding:.5em .9em;
border-radius:6px}.kpi b{font-size:1.3em;display:block}.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{margin:0;border:1px solid #ddd;border-radius:6px;padding:5px;font-size:12px;width:270px}
.thumb{width:128px;height:128px;image-rendering:auto;margin-right:4px}.path{color:#777;font-size:10px}
nav a{margin-right:.8em}.note{color:#555}"""


def render_report(inp: ReportInputs) -> str:
    """The report as one HTML string (images inline)."""
    classes = list(inp.classes)
    m = summary(inp.labels, inp.probs, classes, inp.temperature)
    bins = reliability_bins(inp.labels, inp.probs)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        pics = {
            "curves": plots.history_png(inp.history, t / "curves.png") if inp.history else None,
            "cm": plots.confusion_matrix_png(m["confusion_matrix"], classes, t / "cm.png"),
            "cm_norm": plots.confusion_matrix_png(m["confusion_matrix"], classes, t / "cmn.png", normalize=True),
            "bars": plots.per_class_bars_png(m["per_class"], t / "bars.png"),
            "roc_pr": plots.roc_pr_png(inp.labels, inp.probs, classes, t / "rocpr.png"),
            "robust": plots.robustness_png(inp.robustness["clean_accuracy"], inp.robustness["corruptions"],
                                           inp.robustness["adversarial"], t / "rob.png") if inp.robustness else None,
            "rel": plots.reliability_png(bins.edges, bins.confidence, bins.accuracy, bins.count, m["ece"],
                                         t / "rel.png", ece_scaled=m.get("ece_temperature_scaled")),
        }
        uri = {k: _file_uri(v) for k, v in pics.items()}
    acc_lo, acc_hi = m["accuracy_ci"]
    f1_lo, f1_hi = m["macro_f1_ci"]
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
        f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>" for c, v in m["per_class"].items())
    pairs = "".join(
        f"<tr><td>{html.escape(p['true'])}</td><td style='text-align:left'>{html.escape(p['pred'])}</td>"
        f"<td>{p['count']}</td><td>{p['rate']:.1%}</td></tr>" for p in m["most_confused"]) or \
        "<tr><td colspan=4>no confusions</td></tr>"
    temp = (f"<p>Temperature scaling (fitted on validation): T = {m['temperature']:.3f}; ECE after scaling "
            f"<b>{m['ece_temperature_scaled']:.4f}</b>. Predicted classes do not change, only confidences.</p>"
            if inp.temperature else "<p class=note>No temperature fitted (run `pixclass evaluate --report` on a "
            "run with a validation split to fit one).</p>")
    curves = _img(uri["curves"], "training curves") if uri["curves"] else \
        "<p class=note>No epoch history: this run was fitted in one step (linear mode).</p>"
    notes = "".join(f"<div class=note>{html.escape(n)}</div>" for n in inp.notes)
    auc = f"{m['roc_auc']:.4f}" if "roc_auc" in m else "n/a"
    sections = ["summary", "curves", "confusion", "per-class", "roc-pr", "calibration", "confused", "top-losses",
                "misclassified"] + (["robustness"] if inp.robustness else [])
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in sections)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(inp.title)}</title><style>{CSS}</style></head><body>
<h1>{html.escape(inp.title)}</h1>{notes}<div class=note>generated {datetime.now():%Y-%m-%d %H:%M}</div>
<nav>{nav}</nav>
<h2 id="summary">Summary</h2><div class="kpi">
<div>accuracy<b>{m['accuracy']:.4f}</b>95% CI {acc_lo:.3f} to {acc_hi:.3f}</div>
<div>macro F1<b>{m['macro_f1']:.4f}</b>95% CI {f1_lo:.3f} to {f1_hi:.3f}</div>
<div>ECE<b>{m['ece']:.4f}</b>15 bins</div><div>ROC-AUC<b>{auc}</b>one-vs-rest</div>
<div>images<b>{m['n']}</b>{len(classes)} classes</div></div>
<p class=note>Confidence intervals: percentile bootstrap over test images, 1000 resamples.</p>
<h2 id="curves">Training curves</h2>{curves}
<h2 id="confusion">Confusion matrix</h2><div class="two">{_img(uri['cm'], 'confusion matrix (counts)')}
{_img(uri['cm_norm'], 'confusion matrix (row-normalised)')}</div>
<h2 id="per-class">Per class</h2>{_img(uri['bars'], 'per-class precision recall F1')}
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>
<h2 id="roc-pr">ROC and precision-recall</h2>{_img(uri['roc_pr'], 'ROC and PR curves')}
<h2 id="calibration">Calibration</h2>{_img(uri['rel'], 'reliability diagram')}{temp}
<h2 id="confused">Most-confused pairs</h2>
<table><tr><th>true</th><th>predicted as</th><th>images</th><th>of the true class</th></tr>{pairs}</table>
<h2 id="top-losses">Top losses</h2><p class=note>Highest cross-entropy first; left the image, right the
{html.escape(inp.explain_method)} heatmap for the predicted class.</p>{_gallery(inp.top_losses, inp.explain_method)}
<h2 id="misclassified">Confident mistakes</h2><p class=note>Wrong predictions with the highest confidence.</p>
{_gallery(inp.misclassified, inp.explain_method)}{_robustness(inp.robustness, uri.get("robust"))}
</body></html>"""


def _robustness(r: dict | None, uri: str | None) -> str:
    if not r:
        return ""
    sev = r.get("severities", list(range(1, 6)))
    head = "".join(f"<th>severity {s}</th>" for s in sev)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{a:.3f}</td>" for a in accs) + "</tr>"
                   for n, accs in r["corruptions"].items())
    eps = [row["epsilon"] for row in next(iter(r["adversarial"].values()), [])]
    adv_head = "".join(f"<th>&epsilon; {e * 255:.0f}/255</th>" for e in eps)
    adv_rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{x['accuracy']:.3f}</td>" for x in rows_)
                       + "</tr>" for n, rows_ in r["adversarial"].items())
    return (f'<h2 id="robustness">Robustness</h2><p>Clean accuracy {r["clean_accuracy"]:.4f} on {r["n"]} test '
            f"images; PGD with {r.get('pgd_steps', '?')} steps.</p>{_img(uri, 'robustness chart')}"
            f"<table><tr><th>corruption</th>{head}</tr>{rows}</table>"
            f"<table><tr><th>attack</th>{adv_head}</tr>{adv_rows}</table>")


def write_report(inp: ReportInputs, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(inp), encoding="utf-8")
    return path
