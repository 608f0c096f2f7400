"""Active-learning simulation: replay a fully labeled dataset with its labels as the oracle.

Each strategy starts from the same seeded labeled pool (``initial`` train images), then repeatedly asks for the
``batch`` most informative train images, refits logistic regression on frozen backbone embeddings (linear mode), and
scores on the test split. Random sampling is the baseline. The target is ``target_fraction`` of the accuracy that
linear mode reaches with every train label.

``oracle`` is a ceiling, not a strategy a live queue could run: it reads the pool's true labels and asks first for the
images the current model gets wrong (the most uncertain of them first). How far it beats random bounds what any
strategy that picks by the model's mistakes can gain on the dataset.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from pixclass.data.embeddings import DEFAULT_MODEL, embed_items
from pixclass.data.splits import single_label_indices
from pixclass.errors import ConfigError, DataError
from pixclass.store import Workspace, records
from pixclass.train.active import check_strategy, query, uncertainty
from pixclass.train.linear import fit_linear

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
SMALL_TEST = 100  # fewer labeled test images than this: the curves are too coarse to compare strategies
ORACLE = "oracle"  # simulation only: knows the pool's labels (see the module docstring)


@dataclass
class SimulationResult:
    dataset: str
    curves: dict[str, list[tuple[int, float]]]  # strategy -> [(labels, test accuracy)], mean over repeats
    labels_to_target: dict[str, int | None]  # strategy -> labels needed to reach the target (None: not within budget)
    full_accuracy: float  # linear mode with every train label
    target: float
    target_fraction: float
    pool: int
    test: int
    per_repeat: dict[str, list[int | None]] = field(default_factory=dict)  # labels to target of each seed's curve
    csv: str = ""
    png: str = ""
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def savings(self, baseline: str = "random") -> dict[str, float | None]:
        """labels_to_target of the baseline / that of each strategy (2.0 = half the labels)."""
        base = self.labels_to_target.get(baseline)
        return {k: (round(base / v, 3) if base and v else None) for k, v in self.labels_to_target.items()}

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "curves": {k: [list(p) for p in v] for k, v in self.curves.items()},
                "labels_to_target": self.labels_to_target, "full_accuracy": self.full_accuracy,
                "target": self.target, "target_fraction": self.target_fraction, "pool": self.pool, "test": self.test,
                "savings_vs_random": self.savings() if "random" in self.curves else {},
                "labels_to_target_per_repeat": self.per_repeat, "csv": self.csv,
                "png": self.png, "seconds": self.seconds, "settings": self.settings, "warnings": self.warnings}


def _accuracy(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(((x @ w.T + b).argmax(1) == y).mean())


def _probs(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w.T + b
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _schedule(initial: int, budget: int, batch: int) -> list[int]:
    sizes = list(range(initial, budget, batch)) + [budget]
    return sorted(set(sizes))


def run_curve(strategy: str, x: np.ndarray, y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              num_classes: int, sizes: Sequence[int], start: np.ndarray, *, C: float | None, seed: int = 0,
              val: tuple[np.ndarray, np.ndarray] | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[tuple[int, float]]:
    """Accuracy on the test set after each labeled-pool size in ``sizes``, starting from pool indices ``start``.

    With ``C=None`` each round picks C as `train --mode linear` does at every retraining: on ``val`` (x, y), or by
    cross-validation on the labeled pool when ``val`` has fewer than ``linear.MIN_VAL`` images."""
    vx, vy = val if val is not None else (None, None)
    labeled = list(start)
    is_labeled = np.zeros(len(x), bool)
    is_labeled[labeled] = True
    curve, last = [], None  # last: the model fitted at the previous pool size
    for step, size in enumerate(sizes):
        if len(labeled) < size:
            rest = np.where(~is_labeled)[0]
            need = size - len(labeled)
            w, b = last
            probs = _probs(w, b, x[rest])
            if strategy == ORACLE:  # the model's mistakes first, each group most uncertain first
                scores = uncertainty(probs, "margin") + 2.0 * (probs.argmax(1) != y[rest])
                picks = np.lexsort((np.arange(len(rest)), -scores))[:need]
            else:
                picks = query(strategy, need, probs=probs, embeddings=x[rest], labeled_embeddings=x[labeled],
                              seed=seed + step)
            for i in rest[picks]:
                labeled.append(int(i))
                is_labeled[i] = True
        if len(np.unique(y[labeled])) < 2:
            last = (np.zeros((num_classes, x.shape[1]), np.float32), np.eye(1, num_classes, int(y[labeled[0]]))[0])
        else:
            last = fit_linear(x[labeled], y[labeled], num_classes, val_x=vx, val_y=vy, C=C)[:2]
        curve.append((len(labeled), _accuracy(*last, test_x, test_y)))
        if progress:
            progress(step + 1, len(sizes))
    return curve


def first_reaching(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in curve if acc >= target), None)


def simulate(ws: Workspace, dataset: str, strategies: Sequence[str] = ("margin", "entropy", "random"), *,
             budget: int | None = None, initial: int = 20, batch: int = 20, seed: int = 0, repeats: int = 1,
             model: str = DEFAULT_MODEL, img_size: int = 224, C: float | None = None, tune_c: bool = False,
             target_fraction: float = 0.95, out: str | Path | None = None,
             progress: Progress | None = None) -> SimulationResult:
    """Replay ``dataset`` (labeled train and test splits) for each strategy; writes curve.csv and curve.png
    to ``out``.

    Each round's model uses ``C`` (default: the C that validation picks for the full-data fit); with ``tune_c``
    every round picks its own C on the validation split instead, as the live loop's retraining does (slower)."""
    t0 = time.time()
    names = list(dict.fromkeys(ORACLE if s.strip().lower() == ORACLE else check_strategy(s) for s in strategies))
    if not names:
        raise ConfigError("Give at least one strategy, e.g. --strategy margin,entropy,random.")
    for key, v in {"initial": initial, "batch": batch, "repeats": repeats}.items():
        if v < 1:
            raise ConfigError(f"The '{key}' option must be a positive integer. Got {v}.")
    if not 0 < target_fraction <= 1:
        raise ConfigError(f"The 'target_fraction' option must be in (0, 1]. Got {target_fraction}.")
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        schema = records.load_schema(s, ds)
        split_items = {sp: records.items(s, ds, split=sp, labeled=True) for sp in ("train", "val", "test")}
    if schema.task not in ("binary", "multiclass"):
        raise ConfigError(f"Dataset {dataset!r} is {schema.task}; the simulation handles binary and multiclass tasks.")
    pool_items, val_items, test_items = split_items["train"], split_items["val"], split_items["test"]
    if len(pool_items) < initial + batch or not test_items:
        raise DataError(f"Dataset {dataset!r} needs labeled train images (more than initial + batch = "
                        f"{initial + batch}) and a labeled test split; it has {len(pool_items)} train and "
                        f"{len(test_items)} test images.")
    budget = min(budget or len(pool_items), len(pool_items))
    if budget <= initial:
        raise ConfigError(f"The 'budget' option ({budget}) must be larger than 'initial' ({initial}).")

    everything = pool_items + val_items + test_items
    emb = embed_items(ws, everything, model=model, img_size=img_size, progress=progress)
    x, vx, tx = np.split(emb, [len(pool_items), len(pool_items) + len(val_items)])
    y, vy, ty = (single_label_indices(its, schema) for its in (pool_items, val_items, test_items))
    K = schema.num_classes

    # Full-data linear mode, as `pixclass train --mode linear` does it: C tuned on validation, or by cross-validation
    # on train when validation is small.
    with threadpool_limits(limits=1):
        w, b, c_full = fit_linear(x, y, K, val_x=vx if len(vy) else None, val_y=vy if len(vy) else None, C=C)
    full = _accuracy(w, b, tx, ty)
    if tune_c and (C is not None or not len(vy)):
        log.warning("tune_c needs a labeled validation split and no fixed C; every round uses C=%g", C or c_full)
        tune_c = False
    c_rounds = None if tune_c else C if C is not None else c_full
    target = target_fraction * full
    sizes = _schedule(initial, budget, batch)

    curves: dict[str, list[tuple[int, float]]] = {}
    per_repeat: dict[str, list[int | None]] = {}
    total = len(names) * repeats * len(sizes)
    done = 0
    # Hundreds of small fits: one BLAS thread each is far faster than threads spinning on a busy 2-core machine.
    with threadpool_limits(limits=1):
        for name in names:
            accs = np.zeros((repeats, len(sizes)))
            for r in range(repeats):
                start = np.random.default_rng(seed + 1000 * r).permutation(len(x))[:initial]
                tick = (lambda d, t, base=done: progress("simulate", base + d, total)) if progress else None
                curve = run_curve(name, x, y, tx, ty, K, sizes, start, C=c_rounds, seed=seed + 1000 * r,
                                  val=(vx, vy) if tune_c else None, progress=tick)
                accs[r] = [a for _, a in curve]
                done += len(sizes)
            curves[name] = [(n, round(float(a), 4)) for n, a in zip(sizes, accs.mean(0))]
            per_repeat[name] = [first_reaching(list(zip(sizes, row)), target) for row in accs]
            log.info("%s: %s", name, curves[name][-1])

    result = SimulationResult(
        dataset=dataset, curves=curves, labels_to_target={k: first_reaching(v, target) for k, v in curves.items()},
        per_repeat=per_repeat,
        full_accuracy=round(full, 4), target=round(target, 4), target_fraction=target_fraction, pool=len(x),
        test=len(tx),
        settings={"model": model, "img_size": img_size, "initial": initial, "batch": batch, "budget": budget,
                  "repeats": repeats, "seed": seed, "C": c_rounds if c_rounds is not None else "tuned per round"},
    )
    if len(tx) < SMALL_TEST:
        result.warnings.append(f"The test split has {len(tx)} labeled images, so accuracy moves in steps of "
                               f"{1 / len(tx):.1%} and the labels-to-target figures are noisy. Label more test "
                               f"images (at least {SMALL_TEST}) for figures to act on.")
    for w_ in result.warnings:
        log.warning(w_)
    out_dir = Path(out) if out else ws.new_run_dir(f"al-{dataset}")
    out_dir.mkdir(parents=True, exist_ok=True)
    result.csv = str(write_csv(result, out_dir / "curve.csv"))
    result.png = str(plot_curves(result, out_dir / "curve.png"))
    result.seconds = round(time.time() - t0, 2)
    return result


def write_csv(result: SimulationResult, path: Path) -> Path:
    with path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["strategy", "labels", "accuracy"])
        for name, curve in result.curves.items():
            for n, acc in curve:
                wr.writerow([name, n, f"{acc:.4f}"])
    return path


def plot_curves(result: SimulationResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, curve in result.curves.items():
        ax.plot([n for n, _ in curve], [a for _, a in curve], label=name,
                linestyle="--" if name == "random" else "-", color="gray" if name == "random" else None)
    ax.axhline(result.full_accuracy, color="black", linewidth=0.8, label=f"all labels ({result.full_accuracy:.3f})")
    ax.axhline(result.target, color="black", linewidth=0.8, linestyle=":",
               label=f"{result.target_fraction:.0%} of that ({result.target:.3f})")
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Active learning on {result.dataset} (linear mode, {result.settings.get('model', '')})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
