"""Explanations (Grad-CAM, Grad-CAM++, gradient x input, LIME), robustness checks and the full HTML report."""
