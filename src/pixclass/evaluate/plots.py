"""Pictures of results (matplotlib, Agg backend): confusion matrix and training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(cm: list[list[int]], classes: list[str], path: str | Path, normalize: bool = False) -> Path:
    plt = _plt()
    m = np.asarray(cm, dtype=float)
    if normalize:
        m = m / np.clip(m.sum(1, keepdims=True), 1, None)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                v = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, v, ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def history_png(history: list[dict], path: str | Path) -> Path | None:
    if not history:
        return None
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(ep, [h["train_loss"] for h in history], marker="o")
    a.set_title("training loss")
    a.set_xlabel("epoch")
    b.plot(ep, [h["train_acc"] for h in history], marker="o", label="train")
    b.plot(ep, [h["val_acc"] for h in history], marker="o", label="validation")
    b.set_title("accuracy")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def per_class_bars_png(per_class: dict[str, dict], path: str | Path) -> Path:
    """Grouped precision / recall / F1 bars per class (``per_class`` as in classification_metrics)."""
    plt = _plt()
    classes = list(per_class)
    k = len(classes)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * k + 2), 3.4))
    for j, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (j - 1) * 0.27, [per_class[c][key] for c in classes], width=0.27, label=key)
    ax.set_xticks(x, classes, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-class precision, recall and F1")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def roc_pr_png(labels: np.ndarray, probs: np.ndarray, classes: list[str], path: str | Path) -> Path:
    """One-vs-rest ROC and precision-recall curves per class, AUC / average precision in the legend."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _plt()
    labels = np.asarray(labels, dtype=int)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    shown = [1] if len(classes) == 2 else range(len(classes))  # binary: the positive class only
    for i in shown:
        y = labels == i
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, probs[:, i])
        a.plot(fpr, tpr, lw=1.2, label=f"{classes[i]} ({auc(fpr, tpr):.3f})")
        prec, rec, _ = precision_recall_curve(y, probs[:, i])
        b.plot(rec, prec, lw=1.2, label=f"{classes[i]} ({average_precision_score(y, probs[:, i]):.3f})")
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    a.set(title="ROC (one-vs-rest, AUC)", xlabel="false positive rate", ylabel="true positive rate")
    b.set(title="Precision-recall (average precision)", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    for ax in (a, b):
        ax.legend(fontsize=7, loc="lower right" if ax is a else "lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reliability_png(edges: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray, count: np.ndarray,
                    ece: float, path: str | Path, *, ece_scaled: float | None = None) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts below."""
    plt = _plt()
    fig, (a, b) = plt.subplots(2, 1, figsize=(4.8, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = np.diff(edges)
    has = count > 0
    a.bar(edges[:-1][has], accuracy[has], width=width[has], align="edge", edgecolor="k", alpha=0.8, label="accuracy")
    a.bar(edges[:-1][has], (confidence - accuracy)[has], bottom=accuracy[has], width=width[has], align="edge",
          color="tab:red", alpha=0.3, label="gap to confidence")
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    title = f"Reliability (ECE {ece:.3f}"
    title += f"; after temperature scaling {ece_scaled:.3f})" if ece_scaled is not None else ")"
    a.set(title=title, ylabel="accuracy", ylim=(0, 1))
    a.title.set_fontsize(9)
    a.legend(fontsize=7, loc="upper left")
    b.bar(edges[:-1], count, width=width, align="edge", color="gray")
    b.set(xlabel="confidence", ylabel="images", xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def robustness_png(clean_accuracy: float, corruptions: dict[str, list[float]],
                   adversarial: dict[str, list[dict]], path: str | Path) -> Path:
    """Accuracy by corruption severity (left) and by adversarial epsilon (right)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, accs in corruptions.items():
        a.plot(range(0, len(accs) + 1), [clean_accuracy, *accs], marker="o", label=name)
    a.set(title="Common corruptions", xlabel="severity (0 = clean)", ylabel="accuracy", ylim=(0, 1.02))
    for name, rows in adversarial.items():
        b.plot([0.0] + [r["epsilon"] * 255 for r in rows], [clean_accuracy] + [r["accuracy"] for r in rows],
               marker="o", label=name)
    b.set(title="Adversarial attacks", xlabel="epsilon (x 1/255)", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def binary_curves_png(y: np.ndarray, score: np.ndarray, threshold: float | None, path: str | Path) -> Path:
    """ROC and precision-recall curves of a binary task with the stored operating threshold marked."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    y = np.asarray(y).astype(int)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    fpr, tpr, roc_t = roc_curve(y, score)
    a.plot(fpr, tpr)
    a.plot([0, 1], [0, 1], ls=":", color="grey")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    prec, rec, pr_t = precision_recall_curve(y, score)
    b.plot(rec, prec)
    b.set(xlabel="recall", ylabel="precision", title="precision-recall")
    if threshold is not None:
        pred = score >= threshold
        tp = np.sum(pred & (y == 1))
        p_at, r_at = tp / max(pred.sum(), 1), tp / max((y == 1).sum(), 1)
        f_at = np.sum(pred & (y == 0)) / max((y == 0).sum(), 1)
        a.plot([f_at], [r_at], "o", color="red", label=f"threshold {threshold:.3f}")
        b.plot([r_at], [p_at], "o", color="red", label=f"threshold {threshold:.3f}")
        a.legend(loc="lower right")
        b.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
