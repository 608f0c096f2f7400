"""LIME superpixel explanations (the ``lime`` package, BSD-2): which image regions, when greyed out, change the
prediction most. Slower than Grad-CAM (hundreds of forward passes per image), model-agnostic."""

from __future__ import annotations

from unittest import mock

import numpy as np

from pixclass.models.embed import predict_probs
from pixclass.models.net import Classifier

NUM_SAMPLES = 300  # perturbed copies per image: fewer gave unstable top superpixels on real photos
N_SEGMENTS = 40  # SLIC superpixels per image
TOP_SEGMENTS = 8  # superpixels shown: the ones with the largest positive weights (LIME's usual picture)


def lime_explanation(model: Classifier, image: np.ndarray, *, target: int | None = None,
                     num_samples: int = NUM_SAMPLES, seed: int = 0):
    """Explanation whose heatmap is the positive LIME weight of the top superpixels for ``target`` (default:
    the predicted class); other superpixels are zero."""
    from lime import lime_image
    from skimage.segmentation import slic

    from pixclass.explain.cam import Explanation

    probs = predict_probs(model, image[None], bf16=False)[0]
    label = int(probs.argmax()) if target is None else int(target)

    def classify(batch: np.ndarray) -> np.ndarray:
        return predict_probs(model, np.clip(batch, 0, 255).astype(np.uint8))

    def segmenter(img: np.ndarray) -> np.ndarray:
        return slic(np.clip(img, 0, 255).astype(np.uint8), n_segments=N_SEGMENTS, compactness=10, start_label=0)

    explainer = lime_image.LimeImageExplainer(random_state=seed)
    with mock.patch.object(lime_image, "tqdm", lambda rows: rows):  # lime 0.2 always draws a tqdm bar
        exp = explainer.explain_instance(image.astype(np.float64), classify, labels=(label,), top_labels=None,
                                         hide_color=float(image.mean()), num_samples=num_samples,
                                         segmentation_fn=segmenter, batch_size=64, random_seed=seed)
    weights = np.zeros(int(exp.segments.max()) + 1, np.float64)
    for seg, w in sorted(exp.local_exp[label], key=lambda sw: -sw[1])[:TOP_SEGMENTS]:
        weights[seg] = max(w, 0.0)
    heat = weights[exp.segments]
    heat = heat / heat.max() if heat.max() > 0 else heat
    return Explanation(heat.astype(np.float32), label, float(probs[label]), "lime")
