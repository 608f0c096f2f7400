"""Classical models: scikit-learn estimators on image features, wrapped as a torch module.

``create_estimator(name)`` resolves a model name to an estimator with fast defaults for a few thousand images and
a thousand-odd feature dimensions. ``ClassicalModel`` runs a feature module and then the estimator's
``predict_proba``; its forward returns log-probabilities, so ``softmax(forward(x))`` gives back the estimator's
probabilities and everything written for a Classifier (evaluate, predict) works on it unchanged.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixclass.errors import ConfigError

# name -> what it is; `create_estimator` builds them
CLASSICAL: dict[str, str] = {
    "logreg": "logistic regression on standardised features",
    "svm": "linear SVM, probabilities by sigmoid calibration (3-fold)",
    "knn": "k-nearest neighbours (k=10) on L2-normalised features",
    "tree": "decision tree (min 2 samples a leaf) on 64 principal components",
    "forest": "random forest (200 trees) on 64 principal components",
}
ESTIMATOR_FILE = "estimator.joblib"


PCA_DIMS = 64  # trees on principal components: on clothing-small embeddings 8x faster and 4-6 points better than raw


def create_estimator(name: str, *, seed: int = 0, n_jobs: int = 2, data_shape: tuple[int, int] | None = None):
    """An unfitted scikit-learn classifier for ``name`` (one of CLASSICAL); the training data's shape (N, D), when
    given, caps the PCA size of the tree models."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    if name == "logreg":  # C=0.1: on standardised CNN embeddings 0.03-0.3 are within a point of each other
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300, tol=1e-3))
    if name == "svm":  # sigmoid calibration gives probabilities that export to ONNX, unlike SVC(probability=True)
        svc = LinearSVC(C=0.005, dual=True, tol=1e-3, max_iter=1000, random_state=seed)
        return make_pipeline(StandardScaler(), CalibratedClassifierCV(svc, method="sigmoid", cv=3))
    if name == "knn":
        # uniform votes: skl2onnx's distance weighting differs from scikit-learn's by up to 0.01 in probability
        return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=10))
    dims = min(PCA_DIMS, data_shape[0] - 1, data_shape[1]) if data_shape else PCA_DIMS
    if name == "tree":
        return make_pipeline(PCA(dims, random_state=seed), DecisionTreeClassifier(min_samples_leaf=2,
                                                                                    random_state=seed))
    if name == "forest":
        return make_pipeline(PCA(dims, random_state=seed), RandomForestClassifier(n_estimators=200, n_jobs=n_jobs,
                                                                                    random_state=seed))
    close = difflib.get_close_matches(name, CLASSICAL, n=2)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown classical model {name!r}.{hint} Use one of: {', '.join(CLASSICAL)}.")


def expand_probs(probs: np.ndarray, classes_seen: np.ndarray, num_classes: int) -> np.ndarray:
    """Estimator probabilities over the classes it saw -> (N, K) over every class (unseen classes get 0)."""
    out = np.zeros((len(probs), num_classes), np.float32)
    out[:, np.asarray(classes_seen, dtype=int)] = probs
    return out


class ClassicalModel(nn.Module):
    """features (torch) -> estimator.predict_proba (numpy). forward returns log-probabilities (N, K).

    Attributes as a Classifier has them where it makes sense: ``name``, ``mean``, ``std``, ``num_classes``,
    ``features`` (the feature module: ``model.features(x)`` gives (N, D)).
    """

    def __init__(self, features: nn.Module, estimator, num_classes: int, *, name: str, feature_name: str,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.features = features
        self.estimator = estimator
        self.num_classes = num_classes
        self.name = name
        self.feature_name = feature_name
        self.mean, self.std = tuple(mean), tuple(std)
        self.multilabel = False

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from forward's output, as ``Classifier.probs`` (softmax of log-probabilities)."""
        return torch.softmax(logits, dim=1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities (N, K) for a normalised batch (N, 3, S, S); features are computed in float32."""
        with torch.autocast("cpu", enabled=False):
            f = self.features(x.float().contiguous()).numpy().astype(np.float32)
        return expand_probs(self.estimator.predict_proba(f), self.estimator.classes_, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # tracing would freeze the numpy output
            raise ConfigError("A classical model cannot be traced as a whole; export it with "
                              "pixclass.export.classical.export_classical (features + skl2onnx).")
        return torch.log(torch.from_numpy(self.predict_proba(x)).clamp_min(1e-12))


def load_classical(path: str | Path, ckpt: dict) -> tuple[ClassicalModel, dict]:
    """A ClassicalModel from a run's checkpoint dict (``kind == "classical"``) and the estimator file beside it."""
    import joblib

    from pixclass.models.features import create_features

    run_dir = Path(path)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    est_path = run_dir / Path(str(ckpt.get("estimator_file", ESTIMATOR_FILE))).name  # beside the checkpoint only
    if not est_path.is_file():
        raise ConfigError(f"{est_path} is missing; the classical run in {run_dir} is incomplete. Train it again.")
    estimator = joblib.load(est_path)
    features, mean, std = create_features(ckpt["features"], pretrained=False)
    if ckpt.get("features_state"):
        features.load_state_dict(ckpt["features_state"])
    model = ClassicalModel(features.eval(), estimator, ckpt["num_classes"], name=ckpt["model_name"],
                           feature_name=ckpt["features"], mean=mean, std=std)
    return model.eval(), ckpt
