"""Unsupervised: cluster a dataset's embeddings, store the assignments, draw each cluster, label whole clusters.

`cluster_dataset` embeds every image (cached, ImageNet MobileNetV2 by default), L2-normalises the embeddings and
reduces them with PCA (50 dims; 20 for DBSCAN), then runs k-means, a Gaussian mixture, DBSCAN or agglomerative
(Ward) clustering. It reports the silhouette and, where images carry labels, the adjusted Rand index and NMI against them, writes a
picture per cluster (the samples nearest its centre) and an overview, and stores the assignments in the workspace.
`label_cluster` then turns a cluster into a class: one human annotation per image, to cold-start labeling.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pixclass.data.cache import ImageCache
from pixclass.data.embeddings import DEFAULT_MODEL, embed_dataset
from pixclass.errors import ConfigError, DataError
from pixclass.schema import LabelSchema
from pixclass.store import Workspace, clusters, records
from pixclass.store.tables import Annotation

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

METHODS = ("kmeans", "gmm", "dbscan", "agglomerative")
PCA_DIMS = 50  # enough for the structure of CNN embeddings; makes GMM well-behaved and everything fast
DBSCAN_DIMS = 20  # density needs fewer dimensions: ARI 0.52 at 20 vs 0.29 at 50 on 4 clothing classes
MAX_AGGLOMERATIVE = 20_000  # Ward linkage needs O(N^2) memory
SAMPLES = 16  # images drawn per cluster


@dataclass(frozen=True)
class ClusterResult:
    dataset: str
    method: str
    cluster_run: int  # id of the stored cluster run (for `cluster-label --run`)
    k: int  # clusters found, noise not counted
    n: int  # images clustered
    silhouette: float | None
    ari: float | None  # None when no image has exactly one label
    nmi: float | None
    labeled: int  # images the ARI/NMI were computed on
    sizes: dict[int, int]  # cluster -> images; -1 is noise (DBSCAN)
    out: Path  # folder with clusters.png, cluster-<c>.png, assignments.csv, clusters.json
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        d["sizes"] = {str(c): n for c, n in self.sizes.items()}
        return d


@dataclass(frozen=True)
class LabelClusterResult:
    dataset: str
    cluster_run: int
    cluster: int
    label: str
    labeled: int  # annotations written
    skipped: int  # already-labeled images left alone (only_unlabeled)
    classes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def reduce(emb: np.ndarray, dims: int = PCA_DIMS, seed: int = 0) -> np.ndarray:
    """L2-normalised embeddings projected on their first ``dims`` principal components (N, dims)."""
    from sklearn.decomposition import PCA

    z = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    dims = min(dims, z.shape[0] - 1, z.shape[1])
    return PCA(dims, random_state=seed).fit_transform(z).astype(np.float32) if dims >= 2 else z


def fit_clusters(z: np.ndarray, method: str, k: int, *, seed: int = 0, eps: float | None = None,
                 min_samples: int = 5) -> tuple[np.ndarray, dict]:
    """Cluster labels (N,) of features (N, D), -1 for noise; and the parameters used."""
    from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        return KMeans(k, n_init=4, random_state=seed).fit_predict(z), {"k": k}
    if method == "gmm":
        gmm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-4, n_init=2, random_state=seed)
        return gmm.fit(z).predict(z), {"k": k, "covariance": "diag"}
    if method == "agglomerative":
        if len(z) > MAX_AGGLOMERATIVE:
            raise ConfigError(f"Agglomerative clustering of {len(z)} images needs too much memory (limit "
                              f"{MAX_AGGLOMERATIVE}). Use --method kmeans or gmm.")
        return AgglomerativeClustering(k, linkage="ward").fit_predict(z), {"k": k, "linkage": "ward"}
    if method == "dbscan":
        if eps is None:  # a quarter of the points are core points (measured best of 10-50% on clothing photos)
            from sklearn.neighbors import NearestNeighbors

            dist, _ = NearestNeighbors(n_neighbors=min(min_samples, len(z) - 1) + 1).fit(z).kneighbors(z)
            eps = float(np.quantile(dist[:, -1], 0.25))
        return DBSCAN(eps=eps, min_samples=min_samples).fit_predict(z), {"eps": eps, "min_samples": min_samples}
    raise ConfigError(f"Unknown clustering method {method!r}. Use one of: {', '.join(METHODS)}.")


def _default_k(z: np.ndarray, true: list[str | None], seed: int) -> int:
    """The number of label classes when there are some; else the k in 2..10 with the best k-means silhouette."""
    classes = {t for t in true if t is not None}
    if len(classes) >= 2:
        return len(classes)
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    best = (-2.0, 2)
    for k in range(2, min(10, len(z) - 1) + 1):
        pred = KMeans(k, n_init=2, random_state=seed).fit_predict(z)
        score = silhouette_score(z, pred, sample_size=min(len(z), 2000), random_state=seed)
        best = max(best, (score, k))
    return best[1]


def cluster_dataset(ws: Workspace, dataset: str, *, method: str = "kmeans", k: int | None = None,
                    model: str = DEFAULT_MODEL, img_size: int = 224, eps: float | None = None, min_samples: int = 5,
                    seed: int = 0, out: str | Path | None = None, progress: Progress | None = None) -> ClusterResult:
    """Cluster every non-excluded image of ``dataset`` and store the assignments; see the module docstring."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    if method not in METHODS:
        fit_clusters(np.zeros((0, 0)), method, 0)  # raises the ConfigError
    if k is not None and k < 2:
        raise ConfigError(f"The 'k' option must be at least 2. Got {k}.")
    items, emb = embed_dataset(ws, dataset, model, img_size, progress=progress)
    if len(items) < 3:
        raise DataError(f"Dataset {dataset!r} has {len(items)} images; clustering needs at least 3.")
    z = reduce(emb, DBSCAN_DIMS if method == "dbscan" else PCA_DIMS, seed=seed)
    true = [it.labels[0] if len(it.labels) == 1 else None for it in items]
    k = k or _default_k(z, true, seed)
    if k >= len(items):
        raise ConfigError(f"--k {k} is not below the number of images ({len(items)}).")
    pred, params = fit_clusters(z, method, k, seed=seed, eps=eps, min_samples=min_samples)
    params.update(model=model, img_size=img_size, pca_dims=int(z.shape[1]), seed=seed)

    found = sorted(set(pred.tolist()) - {-1})
    core = pred != -1
    silhouette = None
    if 2 <= len(found) < int(core.sum()):
        silhouette = float(silhouette_score(z[core], pred[core], sample_size=min(int(core.sum()), 3000),
                                            random_state=seed))
    have = [i for i, t in enumerate(true) if t is not None]
    ari = nmi = None
    if have:
        t, p = [true[i] for i in have], pred[have]
        ari, nmi = float(adjusted_rand_score(t, p)), float(normalized_mutual_info_score(t, p))
    sizes = {int(c): int(n) for c, n in zip(*np.unique(pred, return_counts=True))}

    run_dir = Path(out) if out else ws.new_run_dir(f"cluster-{dataset}-{method}")
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"silhouette": silhouette, "ari": ari, "nmi": nmi, "labeled": len(have)}
    with ws.session() as s:
        row = clusters.add_cluster_run(s, records.get_dataset(s, dataset), method=method, k=len(found),
                                       params=params, metrics=metrics, path=str(run_dir.resolve()),
                                       assignments={it.image_id: int(c) for it, c in zip(items, pred)})
        run_id = row.id
    with (run_dir / "assignments.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "path", "cluster", "label"])
        w.writerows([it.image_id, it.path, int(c), "|".join(it.labels)] for it, c in zip(items, pred))
    draw_clusters(ws, items, z, pred, run_dir, labels=true)
    result = ClusterResult(dataset, method, run_id, len(found), len(items), silhouette, ari, nmi, len(have), sizes,
                           run_dir, params)
    (run_dir / "clusters.json").write_text(json.dumps(result.to_dict(), indent=2))
    log.info("clustered %d images of %s into %d clusters (%s)", len(items), dataset, len(found), method)
    return result


def _representatives(z: np.ndarray, pred: np.ndarray, c: int, n: int) -> np.ndarray:
    idx = np.where(pred == c)[0]
    centre = z[idx].mean(0)
    return idx[np.argsort(((z[idx] - centre) ** 2).sum(1))[:n]]


def draw_clusters(ws: Workspace, items: list[records.Item], z: np.ndarray, pred: np.ndarray, out: Path, *,
                  labels: list[str | None] | None = None, thumb: int = 96) -> list[Path]:
    """cluster-<c>.png (a 4x4 grid of the images nearest the cluster centre) per cluster, and clusters.png (one row
    of 8 per cluster, at most 30 clusters). Returns the files written."""
    from PIL import Image, ImageDraw

    chosen = {int(c): _representatives(z, pred, int(c), SAMPLES) for c in np.unique(pred)}
    flat = sorted({int(i) for idx in chosen.values() for i in idx})
    arrays = ImageCache(ws.cache_dir, thumb).get([items[i].path for i in flat], [items[i].sha256 for i in flat])
    pic = {i: Image.fromarray(a) for i, a in zip(flat, arrays)}
    written = []
    for c, idx in chosen.items():
        cols = 4
        rows = (len(idx) + cols - 1) // cols
        grid = Image.new("RGB", (cols * thumb, rows * thumb + 18), "white")
        ImageDraw.Draw(grid).text((4, 3), f"cluster {c}: {int((pred == c).sum())} images", fill="black")
        for j, i in enumerate(idx):
            grid.paste(pic[int(i)], ((j % cols) * thumb, 18 + (j // cols) * thumb))
        path = out / f"cluster-{'noise' if c == -1 else c}.png"
        grid.save(path)
        written.append(path)
    shown = sorted(chosen)[:30]
    small, per_row, margin = 64, 8, 110
    sheet = Image.new("RGB", (margin + per_row * small, len(shown) * small), "white")
    draw = ImageDraw.Draw(sheet)
    for r, c in enumerate(shown):
        members = np.where(pred == c)[0]
        top = ""
        if labels:
            names = [labels[i] for i in members if labels[i]]
            if names:
                vals, counts = np.unique(names, return_counts=True)
                top = f"{vals[counts.argmax()][:12]} {counts.max() / len(members):.0%}"
        draw.text((4, r * small + 8), f"{'noise' if c == -1 else f'cluster {c}'}", fill="black")
        draw.text((4, r * small + 24), f"{len(members)} images", fill="gray")
        draw.text((4, r * small + 40), top, fill="gray")
        for j, i in enumerate(chosen[c][:per_row]):
            sheet.paste(pic[int(i)].resize((small, small)), (margin + j * small, r * small))
    sheet.save(out / "clusters.png")
    return [out / "clusters.png", *written]


def label_cluster(ws: Workspace, dataset: str, cluster: int, label: str, *, cluster_run: int | None = None,
                  author: str = "", only_unlabeled: bool = False) -> LabelClusterResult:
    """Label every image of one cluster as ``label`` (human annotations); the class is added when new.

    Multi-label datasets get ``label`` added to each image's labels; others get it as the image's one label.
    ``only_unlabeled`` leaves images that already have labels alone.
    """
    label = label.strip()
    if not label:
        raise ConfigError("The label must not be empty. Give --label NAME.")
    with ws.session() as s:
        ds = records.get_dataset(s, dataset)
        run = clusters.get_cluster_run(s, ds, cluster_run)
        members = [i for i, c in clusters.assignments(s, run).items() if c == cluster]
        if not members:
            known = sorted(set(clusters.assignments(s, run).values()))
            raise DataError(f"Cluster run {run.id} of {dataset!r} has no cluster {cluster}. Clusters: "
                            f"{', '.join(map(str, known))} (-1 is noise).")
        schema = records.load_schema(s, ds)
        if label not in schema.classes:
            schema = _with_class(schema, label)
            records.save_schema(s, ds, schema)
        current = records.current_labels(s, members)
        written = skipped = 0
        for image_id in members:
            have = list(current.get(image_id, []))
            if have and only_unlabeled:
                skipped += 1
                continue
            new = sorted(set(have) | {label}) if schema.task == "multilabel" else [label]
            if new == sorted(have):
                continue
            s.add(Annotation(image_id=image_id, labels=new, source="human", author=author or "cluster-label"))
            written += 1
        return LabelClusterResult(dataset, run.id, cluster, label, written, skipped, list(schema.classes))


def _with_class(schema: LabelSchema, label: str) -> LabelSchema:
    classes = tuple(sorted({*schema.classes, label}))
    if schema.task in ("multilabel", "hierarchical"):
        return LabelSchema(schema.task, classes, schema.positive)
    if len(classes) == 2:
        positive = schema.positive if schema.positive in classes else classes[-1]
        return LabelSchema("binary", classes, positive)
    return LabelSchema("multiclass", classes, None)
