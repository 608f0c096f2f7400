"""The curate HTML report: one self-contained file with thumbnails (base64 JPEG) for each finding, duplicate pairs
side by side, a class-balance chart and a 2-D t-SNE map of the embeddings coloured by class."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from pixclass.data.cache import ImageCache
from pixclass.errors import DataError
from pixclass.io.images import load_rgb

SHOW_PER_KIND = 40  # thumbnails per kind; the JSON and `issues-list` have all of them
MAP_POINTS = 1000  # t-SNE on at most this many images
THUMB = 112


def _b64_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _thumb(arr: np.ndarray | None) -> str:
    if arr is None:
        return ""
    im = Image.fromarray(arr)
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def balance_chart(counts: dict[str, int]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(counts) + 2), 3))
    ax.bar(list(counts), list(counts.values()), color="#4c78a8")
    ax.set_ylabel("images")
    ax.tick_params(axis="x", rotation=45)
    out = _b64_png(fig)
    plt.close(fig)
    return out


def embedding_map(emb: np.ndarray, labels: list[str | None], marks: dict[int, str], seed: int = 0) -> str:
    """t-SNE of (a sample of) the embeddings; outliers and label errors drawn as marked points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(emb)
    if n < 5:
        return ""
    rng = np.random.default_rng(seed)
    keep = np.union1d(rng.choice(n, min(n, MAP_POINTS), replace=False), np.array(sorted(marks), np.int64)[:300])
    x = emb[keep]
    if x.shape[1] > 50:
        x = PCA(min(50, len(x) - 1), random_state=seed).fit_transform(x)
    tsne = TSNE(2, perplexity=min(30, max(2, (len(x) - 1) // 3)), init="pca", max_iter=500, random_state=seed)
    xy = tsne.fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 6))
    names = sorted({lab for lab in labels if lab is not None})
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    lab = np.array([labels[i] or "" for i in keep])
    for c, name in enumerate(names):
        m = lab == name
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(c % cmap.N), label=name)
    for kind, marker in (("outlier", "x"), ("label_error", "o")):
        m = np.array([marks.get(int(i)) == kind for i in keep])
        if m.any():
            style = {"facecolors": "none", "edgecolors": "black"} if marker == "o" else {"color": "black"}
            ax.scatter(xy[m, 0], xy[m, 1], s=40, marker=marker, label=kind.replace("_", " "), **style)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    out = _b64_png(fig)
    plt.close(fig)
    return out


def _thumbnails(ws, result, paths: list[str]) -> dict[str, str]:
    items = {it.path: it for it in result.extra["items"]}
    cached = [p for p in paths if p in items]
    out: dict[str, str] = {}
    if cached:
        arrays = ImageCache(ws.cache_dir, result.extra["size"]).get(cached, [items[p].sha256 for p in cached])
        out.update({p: _thumb(a) for p, a in zip(cached, arrays)})
    for p in paths:
        if p not in out:
            try:
                out[p] = _thumb(load_rgb(p, THUMB))
            except DataError:
                out[p] = ""
    return out


def _card(f: dict, thumbs: dict[str, str]) -> str:
    def img(path: str | None, caption: str) -> str:
        if not path:
            return ""
        data = thumbs.get(path, "")
        pic = f'<img src="data:image/jpeg;base64,{data}">' if data else '<div class="none">unreadable</div>'
        return (f'<figure>{pic}<figcaption title="{html.escape(path)}">{html.escape(caption)}<br>'
                f'{html.escape(Path(path).name)}</figcaption></figure>')

    if f["kind"] == "label_error":
        given, suggested = html.escape(f["given_label"] or ""), html.escape(f["suggested_label"] or "")
        head = f"given <b>{given}</b> &rarr; suggested <b>{suggested}</b>"
    else:
        head = ", ".join(f"{k} {v}" for k, v in f["evidence"].items() if k not in ("note",))
    pics = img(f["path"], f["split"] or "") + img(f["other_path"], "pair")
    return (f'<div class="card"><div class="pics">{pics}</div><div class="meta">score {f["score"]:.3f} '
            f'&middot; {html.escape(f["status"])}<br>{html.escape(head) if f["kind"] != "label_error" else head}'
            f'</div></div>')


def write_report(ws, result, path: str | Path, progress: Callable[[int, int], None] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    by_kind: dict[str, list[dict]] = {}
    for f in result.findings:
        by_kind.setdefault(f["kind"], []).append(f)
    shown = {k: v[:SHOW_PER_KIND] for k, v in by_kind.items()}
    want = sorted({p for v in shown.values() for f in v for p in (f["path"], f["other_path"]) if p})
    thumbs = _thumbnails(ws, result, want)
    if progress:
        progress(1, 3)
    row_of = {it.path: i for i, it in enumerate(result.extra["items"])}
    marks = {row_of[f["path"]]: f["kind"] for f in result.findings
             if f["kind"] in ("outlier", "label_error") and f["path"] in row_of}
    tsne = embedding_map(result.extra["emb"], result.extra["labels"], marks)
    chart = balance_chart(result.class_balance["counts"]) if result.class_balance["counts"] else ""
    if progress:
        progress(2, 3)
    ch = result.changes
    before = {k: v["before"] for k, v in ch.get("per_kind", {}).items()}
    rows = "".join(f"<tr><td>{k}</td><td>{n}</td><td>{before.get(k, 0) if ch.get('previous_run') else ''}</td></tr>"
                   for k, n in result.summary.items())
    changes = ""
    if ch.get("previous_run"):
        changes = (f"<p>Compared with curate run {ch['previous_run']}: {len(ch['new'])} new findings, "
                   f"{len(ch['resolved'])} resolved.</p><ul>" +
                   "".join(f"<li>resolved {html.escape(r['kind'])}: {html.escape(Path(r['path']).name)} "
                           f"({html.escape(r['status'])})</li>" for r in ch["resolved"][:30]) + "</ul>")
    cb = result.class_balance
    sections = "".join(
        f'<h2 id="{k}">{k.replace("_", " ")} ({len(by_kind[k])})</h2><div class="grid">'
        + "".join(_card(f, thumbs) for f in shown[k]) + "</div>"
        + (f"<p>{len(by_kind[k]) - len(shown[k])} more: <code>pixclass issues-list {html.escape(result.dataset)} "
           f"--kind {k}</code></p>" if len(by_kind[k]) > len(shown[k]) else "")
        for k in result.summary if k in by_kind)
    acc = (f"Out-of-sample accuracy of the cross-validated linear models: {result.label_model_accuracy:.3f}."
           if result.label_model_accuracy is not None else "")
    name, st = html.escape(result.dataset), result.settings
    below = html.escape(", ".join(cb["below_minimum"]) or "none")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>pixclass curate: {name}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} .grid{{display:flex;flex-wrap:wrap;gap:8px}}
.card{{border:1px solid #ddd;padding:4px;width:250px;font-size:11px}} .pics{{display:flex;gap:4px}}
figure{{margin:0;width:{THUMB}px}} figcaption{{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}}
.none{{width:{THUMB}px;height:{THUMB}px;background:#fdd;display:flex;align-items:center;justify-content:center}}</style>
</head><body><h1>Dataset health: {name}</h1>
<p>{result.images} images checked in curate run {result.run_id} ({st['model']} at {st['img_size']} px). {acc}</p>
<table><tr><th>kind</th><th>findings</th><th>previous run</th></tr>{rows}</table>{changes}
<h2>Class balance</h2><p>Imbalance ratio {cb['imbalance_ratio']}; below minimum: {below}.</p>
<ul>{''.join(f'<li>{html.escape(r)}</li>' for r in cb['remedies'])}</ul>
{f'<img src="data:image/png;base64,{chart}">' if chart else ''}
<h2>Embedding map (t-SNE)</h2>{f'<img src="data:image/png;base64,{tsne}">' if tsne else '<p>Too few images.</p>'}
{sections}</body></html>"""
    path.write_text(page, encoding="utf-8")
    if progress:
        progress(3, 3)
    return path
