"""Dataset health: duplicates and leakage, broken and poor images, outliers, class balance, label errors."""

from pixclass.curate.fix import apply_fix
from pixclass.curate.run import KINDS, CurateConfig, CurateResult, curate

__all__ = ["KINDS", "CurateConfig", "CurateResult", "apply_fix", "curate"]
