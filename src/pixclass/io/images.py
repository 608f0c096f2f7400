"""Safe image decoding: every failure becomes a DataError naming the file and the reason.

Handles JPEG draft-mode decoding, EXIF orientation, and every Pillow mode (CMYK, 16-bit, palette, alpha) to RGB.
No torch here: the inference layer uses this too.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixclass.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
PROBE_SIZE = 64  # import decodes at this draft size: enough to prove the whole file decodes, fast


@dataclass(frozen=True)
class ImageInfo:
    path: str
    sha256: str
    width: int
    height: int
    format: str


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes). Re-copy it or delete it.")
        return Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read (wrong extension or not an image).") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e}).") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha is composited on white, 16-bit and float are rescaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _decode(path: str | Path, draft: int | None) -> Image.Image:
    img = _open(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: image too large ({e}). Downscale it before importing.") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason:
            reason = f"truncated file ({reason})"
        raise DataError(f"{path}: corrupt image data: {reason}. Re-copy or delete it.") from None


def probe(path: str | Path) -> ImageInfo:
    """Hash the file and prove it decodes. Width and height are after EXIF rotation."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e}).") from None
    img = _open(path)
    fmt, (w, h) = img.format or "?", img.size
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    _decode(path, PROBE_SIZE)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageInfo(str(path), hashlib.sha256(data).hexdigest(), w, h, fmt)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size``."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None if scale > 0.5 else 2.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode to an RGB uint8 array (H, W, 3); with ``size``, a ``size x size`` centre crop."""
    img = _decode(path, size)
    if size:
        img = fit_square(img, size)
    return np.asarray(img, dtype=np.uint8)


def decode_bytes(data: bytes, size: int, name: str = "<upload>") -> np.ndarray:
    """Like load_rgb for an in-memory file (uploads)."""
    import io

    if not data:
        raise DataError(f"{name}: empty file (0 bytes).")
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
        return np.asarray(fit_square(to_rgb(ImageOps.exif_transpose(img)), size), dtype=np.uint8)
    except UnidentifiedImageError:  # its message is the repr of the buffer: say it in words
        raise DataError(f"{name}: not an image file Pillow can read (wrong extension or not an image).") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: image too large ({e}).") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        raise DataError(f"{name}: corrupt image data: {reason}.") from None


def iter_image_files(root: Path) -> list[Path]:
    """Every non-hidden file under root, sorted. Non-image files are kept so that import reports them."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W)."""
    x = batch.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1 / 255)
    return np.ascontiguousarray((x - np.float32(mean).reshape(1, 3, 1, 1)) / np.float32(std).reshape(1, 3, 1, 1))
