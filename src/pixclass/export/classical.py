"""Export a classical run (features + scikit-learn estimator) as ONE model.onnx.

The feature module is exported with torch.onnx (input ``input``, normalised (N, 3, S, S)); the estimator with
skl2onnx (Apache-2.0); the two graphs are joined so that the features feed the estimator, and a constant
(K_seen, K) matrix maps the estimator's probabilities onto every class of the schema. The artifact therefore looks
exactly like any other: ``input`` -> ``output`` probabilities (N, K), and ``inference.Predictor`` runs it unchanged.

Every model in ``models.classical.CLASSICAL`` converts. An estimator skl2onnx cannot convert raises a ConfigError;
the documented alternative is to predict and serve from the run directory itself (``pixclass predict RUN``, torch +
scikit-learn via ``load_checkpoint``), which needs no conversion.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from pixclass.artifact import Manifest
from pixclass.errors import ConfigError
from pixclass.models.classical import ClassicalModel
from pixclass.models.embed import export_onnx
from pixclass.models.registry import load_checkpoint

OPSET = 17  # the torch exporter's opset (models.embed.export_onnx); the sklearn graph is made at the same one


def _sklearn_onnx(estimator, dim: int):
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as e:
        raise ConfigError("Exporting a classical model needs skl2onnx: `pip install skl2onnx` (or "
                          "`pip install pixclass[train]`). Without it, predict from the run directory.") from e
    try:
        return to_onnx(estimator, initial_types=[("features", FloatTensorType([None, dim]))],
                       target_opset={"": OPSET, "ai.onnx.ml": 3}, options={"zipmap": False})
    except Exception as e:  # noqa: BLE001 - skl2onnx raises many kinds for an unsupported estimator
        raise ConfigError(
            f"skl2onnx cannot convert {type(estimator).__name__} ({e}). Predict and serve from the run directory "
            "instead (`pixclass predict RUN ...` uses torch + scikit-learn), or train one of the convertible "
            "models: logreg, svm, knn, tree, forest.") from e


def build_onnx(model: ClassicalModel, img_size: int, path: str | Path) -> Path:
    """Write one ONNX graph: normalised images ``input`` (N, 3, S, S) -> probabilities ``output`` (N, K)."""
    import onnx
    from onnx import compose, helper, numpy_helper

    with tempfile.TemporaryDirectory() as tmp:
        feat_path = Path(tmp) / "features.onnx"
        export_onnx(model.features, feat_path, img_size)  # output name "output", shape (N, D)
        feat = onnx.load(str(feat_path))
    dim = int(model.features(torch.zeros(1, 3, img_size, img_size)).shape[1])
    skl = _sklearn_onnx(model.estimator, dim)
    prob_name = [o.name for o in skl.graph.output if o.name != "label"][0]
    ir = min(feat.ir_version, skl.ir_version)
    feat.ir_version = skl.ir_version = ir
    for m in (feat, skl):  # one opset per domain in the merged model
        for imp in m.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = OPSET
    merged = compose.merge_models(feat, skl, io_map=[("output", "features")], prefix1="feat_", prefix2="skl_",
                                  outputs=[f"skl_{prob_name}"])
    mapping = np.zeros((len(model.estimator.classes_), model.num_classes), np.float32)
    mapping[np.arange(len(model.estimator.classes_)), np.asarray(model.estimator.classes_, dtype=int)] = 1
    g = merged.graph
    g.initializer.append(numpy_helper.from_array(mapping, "class_map"))
    g.node.append(helper.make_node("MatMul", [f"skl_{prob_name}", "class_map"], ["output"]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["batch", model.num_classes]))
    g.input[0].name = "input"
    for node in g.node:  # the features' renamed input back to "input"
        node.input[:] = ["input" if n == "feat_input" else n for n in node.input]
    onnx.checker.check_model(merged)
    onnx.save(merged, str(path))
    return Path(path)


def export_classical(run_dir: str | Path, out_dir: str | Path | None = None, *, fmt: str = "onnx",
                     parity_images: np.ndarray | None = None):
    """Write ``model.onnx`` + ``manifest.json`` for a classical run and compare with torch + scikit-learn.

    Returns the same ExportResult as ``export.onnx.export_run``; parity_images are uint8 (N, S, S, 3).
    """
    from pixclass.export.onnx import finish_export  # onnx.export_run dispatches here

    if fmt != "onnx":
        raise ConfigError(f"Unknown export format {fmt!r}. Supported: onnx.")
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    model, _ = load_checkpoint(run_dir)
    if not isinstance(model, ClassicalModel):
        raise ConfigError(f"{run_dir} is not a classical run; export it with `pixclass export`.")
    out = Path(out_dir) if out_dir else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = build_onnx(model, manifest.preprocess.img_size, out / "model.onnx")

    return finish_export(run_dir, out, manifest, onnx_path, lambda x: model.predict_proba(torch.from_numpy(x)),
                         parity_images, extra_versions=("skl2onnx",))
