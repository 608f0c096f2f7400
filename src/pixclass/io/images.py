"""Safe image decoding: every failure becomes a DataError naming the file and the reason.

Handles JPEG draft-mode decoding, EXIF orientation, and every Pillow mode (CMYK, 16-bit, palette, alpha) to RGB.
No torch here: the inference layer uses this too.

Size limits. An image is refused from its header, before any pixel is decoded, with a DataError
"image too large: N megapixels (WxH), above the limit of M megapixels ...; downscale it", when it has more than

- ``MAX_JPEG_PIXELS`` = 200 MP for JPEG (and MPO, the JPEG variant some cameras write). Import and training decode
  JPEGs in draft mode at up to 1/8 scale, so a 200 MP baseline JPEG probes in ~0.4 s and ~30 MB. A progressive JPEG
  still holds every DCT coefficient while it decodes (~3 bytes per pixel: ~600 MB and ~2 s at 200 MP), which is what
  sets the bound. It covers every single-shot camera (the largest, 151 MP medium format) with room to spare.
- ``MAX_PIXELS`` = 120 MP for every other format (PNG, TIFF, WebP, BMP, GIF ...). These have no reduced-size decoding:
  the whole image is in memory, 360 MB as RGB and 480 MB with alpha. That keeps 100 MP exports (Fujifilm GFX100,
  102 MP) and a 99 MP PNG, and refuses anything needing much more.

A full-resolution decode (``load_rgb`` without ``size``) of a 200 MP JPEG needs 600 MB or more: servers should show
``thumbnail_jpeg`` instead. The limits are module constants read at call time, so a program may change them.

The check compares ``img.size`` with these numbers: it touches no ``warnings`` filters, which are process-wide and
not thread-safe, so decoding in a thread pool (import, the image cache, the server) is safe.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from pixclass.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
PROBE_SIZE = 64  # import decodes at this draft size: enough to prove the whole file decodes, fast
MAX_JPEG_PIXELS = 200_000_000  # JPEG and MPO: decoded in draft mode (see the module docstring)
MAX_PIXELS = 120_000_000  # every other format: decoded at full size

# Pillow's own decompression-bomb check warns above MAX_IMAGE_PIXELS (default ~89.5 MP) and raises above twice that.
# We enforce the limits above ourselves, so its threshold sits at our highest one: no image we accept ever warns,
# and Pillow still refuses anything over 400 MP for any caller, which _open reports like our own check. This is a
# process-wide Pillow setting, made here on purpose.
Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS

# What a corrupt file makes Pillow's decoders raise, besides OSError ("image file is truncated", "broken data stream").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
                  MemoryError)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)  # the warning, should a filter make it raise
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose that shows the image upright


@dataclass(frozen=True)
class ImageInfo:
    path: str
    sha256: str
    width: int
    height: int
    format: str


# ---------------------------------------------------------------- opening and the size check


def _is_jpeg(img: Image.Image) -> bool:
    return isinstance(img, JpegImagePlugin.JpegImageFile)  # MPO (multi-picture JPEG) is a subclass


def _too_large(name: object, img: Image.Image) -> DataError:
    w, h = img.size
    if _is_jpeg(img):
        limit, kind, other = MAX_JPEG_PIXELS, "JPEG", f"other formats: {MAX_PIXELS / 1e6:g}"
    else:
        limit, kind, other = MAX_PIXELS, img.format or "non-JPEG", f"JPEG: {MAX_JPEG_PIXELS / 1e6:g}"
    mp = f"{w * h / 1e6:.1f}"
    mp = mp if float(mp) > limit / 1e6 else f"{w * h / 1e6:.3f}"  # not "120.0, above the limit of 120"
    return DataError(f"{name}: image too large: {mp} megapixels ({w}x{h}), above the limit of "
                     f"{limit / 1e6:g} megapixels for {kind} images ({other}). Downscale it: 24 megapixels is "
                     f"plenty for classification.")


def _bomb(name: object, e: Exception) -> DataError:
    """Pillow refused the image on opening (over 2x Image.MAX_IMAGE_PIXELS): the same words as _too_large."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(m.group(1)) / 1e6:.1f} megapixels" if m else "more pixels than Pillow allows"
    return DataError(f"{name}: image too large: {size}, above the limits of {MAX_JPEG_PIXELS / 1e6:g} megapixels "
                     f"for JPEG images and {MAX_PIXELS / 1e6:g} for other formats. Downscale it: 24 megapixels is "
                     f"plenty for classification.")


def _corrupt(name: object, e: BaseException) -> DataError:
    if isinstance(e, MemoryError):
        return DataError(f"{name}: not enough memory to decode this image. Downscale it or free memory.")
    reason = str(e) or type(e).__name__
    if "truncated" in reason.lower():
        reason = f"truncated file ({reason})"
    return DataError(f"{name}: corrupt image data: {reason}. Re-copy or delete it.")


def _checked(img: Image.Image, name: object) -> Image.Image:
    """The opened image if its declared size is within the limits; else close it and raise DataError."""
    w, h = img.size
    if w * h > (MAX_JPEG_PIXELS if _is_jpeg(img) else MAX_PIXELS):
        img.close()
        raise _too_large(name, img)
    return img


def _open(path: str | Path) -> Image.Image:
    """Open a file (header only) and check its size. Use it in a ``with`` block: that closes the file."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes). Re-copy it or delete it.")
        img = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read (wrong extension or not an image).") from None
    except _BOMB as e:
        raise _bomb(path, e) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e}).") from None
    except _DECODE_ERRORS as e:  # a header that fooled a plugin
        raise _corrupt(path, e) from None
    return _checked(img, path)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 is upright), read from the header; a broken EXIF block counts as upright."""
    try:
        value = img.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# ---------------------------------------------------------------- decoding


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


def _load(img: Image.Image, name: object, draft: int | None, *, check: bool = False) -> Image.Image:
    """Decode an opened, size-checked image to upright RGB; JPEGs decode near ``draft`` px. With ``check`` (probe:
    the pixels are thrown away) a large image of any format is subsampled to ~``draft`` px before the RGB
    conversion, which proves the mode converts without copying a 100 MP image three times."""
    try:
        if draft and _is_jpeg(img):
            img.draft("RGB", (draft, draft))
        img.load()
        factor = min(img.size) // (2 * draft) if check and draft else 0
        if factor > 1:  # nearest neighbour: cheap and works in every mode
            img = img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.NEAREST)
        return to_rgb(ImageOps.exif_transpose(img))
    except _BOMB as e:  # a later frame (GIF, TIFF) larger than the first
        raise _bomb(name, e) from None
    except _DECODE_ERRORS as e:
        raise _corrupt(name, e) from None


def _decode(path: str | Path, draft: int | None) -> Image.Image:
    with _open(path) as img:
        return _load(img, path, draft)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def probe(path: str | Path) -> ImageInfo:
    """Hash the file and prove it decodes. Width and height are after EXIF rotation."""
    path = Path(path)
    try:
        sha = _sha256(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e}).") from None
    with _open(path) as img:
        fmt, (w, h), orientation = img.format or "?", img.size, _orientation(img)
        _load(img, path, PROBE_SIZE, check=True)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageInfo(str(path), sha, w, h, fmt)


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
    if not data:
        raise DataError(f"{name}: empty file (0 bytes).")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message is the repr of the buffer: say it in words
        raise DataError(f"{name}: not an image file Pillow can read (wrong extension or not an image).") from None
    except _BOMB as e:
        raise _bomb(name, e) from None
    except _DECODE_ERRORS as e:
        raise _corrupt(name, e) from None
    with _checked(img, name):
        return np.asarray(fit_square(_load(img, name, size), size), dtype=np.uint8)


# ---------------------------------------------------------------- serving


_THUMB_FIRST = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F")  # modes that shrink well before to_rgb


def thumbnail_jpeg(path: str | Path, size: int, quality: int = 85) -> bytes:
    """JPEG bytes of the upright image shrunk to fit ``size x size`` (aspect kept, never enlarged).

    JPEGs decode in draft mode near ``size``, so a 60 MP photo costs a fraction of a full decode; other formats are
    shrunk before the RGB conversion. Any mode becomes RGB as in ``to_rgb``. Raises DataError naming the file.
    """
    if size < 1 or not 1 <= quality <= 100:
        raise ValueError(f"thumbnail_jpeg needs size >= 1 and quality in 1..100. Got size={size}, quality={quality}.")
    with _open(path) as img:
        orientation = _orientation(img)
        try:
            if _is_jpeg(img):
                img.draft("RGB", (size, size))
            img.load()
            if img.mode in _THUMB_FIRST:
                img.thumbnail((size, size))  # "1" and "P" would shrink by nearest neighbour: convert them first
            small = to_rgb(img)
            small.thumbnail((size, size))
            if orientation in _TRANSPOSE:
                small = small.transpose(_TRANSPOSE[orientation])
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=quality)
        except _BOMB as e:
            raise _bomb(path, e) from None
        except _DECODE_ERRORS as e:
            raise _corrupt(path, e) from None
    return buf.getvalue()


# Image types browsers display, and nothing else: a file is served as one of these or not at all, so no upload
# is ever served as HTML or script whatever its name says.
BROWSER_IMAGE_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                       "WEBP": "image/webp", "BMP": "image/bmp", "AVIF": "image/avif", "ICO": "image/x-icon"}


def image_media_type(path: str | Path) -> str | None:
    """The MIME type of the file's real format as Pillow detects it from the content (a JPEG named .png is
    ``image/jpeg``), when browsers display that format (``BROWSER_IMAGE_TYPES``); None when Pillow finds no image
    there, or one browsers do not show (TIFF, PPM, ...). The name never decides. Reads only the header, never
    raises."""
    try:
        with Image.open(path) as img:
            fmt = img.format
    except (*_BOMB, *_DECODE_ERRORS):  # unreadable, missing, not an image
        return None
    return BROWSER_IMAGE_TYPES.get(fmt or "")


# ---------------------------------------------------------------- folders and batches


def iter_image_files(root: Path) -> list[Path]:
    """Every non-hidden file under root, sorted. Non-image files are kept so that import reports them."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W)."""
    x = batch.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1 / 255)
    return np.ascontiguousarray((x - np.float32(mean).reshape(1, 3, 1, 1)) / np.float32(std).reshape(1, 3, 1, 1))
