"""Images as PNG ``data:`` URIs, written with NumPy and zlib (no imaging library)."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import numpy as np
import torch

__all__ = ["image_to_data_uri"]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _as_uint8_hwc(image: Any) -> np.ndarray:
    """``image`` as a ``(H, W, C)`` uint8 array, ``C`` in 1, 3, 4."""
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu().numpy()
        if arr.ndim == 3:  # torch's layout is (C, H, W)
            arr = np.moveaxis(arr, 0, -1)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise TypeError(
            "Expected an image to be a str (URL), numpy.ndarray or torch.Tensor, but got "
            f"{type(image).__name__}."
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            "Expected an image of shape (H, W), (H, W, C) for NumPy or (C, H, W) for torch, "
            f"with C in 1, 3, 4, but got shape {image.shape}."
        )
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"Expected a uint8 or float image, but got dtype {arr.dtype}.")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError(
            "Expected a float image to hold values in [0, 1], but got values in "
            f"[{arr.min()}, {arr.max()}]."
        )
    return np.round(arr * 255).astype(np.uint8)


def image_to_data_uri(image: Any) -> str:
    """A PNG ``data:`` URI of ``image``, which Label Studio shows like any image URL.

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        ``(H, W)`` gray, ``(H, W, C)`` for NumPy or ``(C, H, W)`` for torch, ``C`` in 1
        (gray), 3 (RGB), 4 (RGBA); ``uint8``, or float in ``[0, 1]``.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``, about ``4/3`` of the PNG's size.

    Examples
    --------
    >>> import numpy as np
    >>> from aalearn.integrations.labelstudio import image_to_data_uri
    >>> image_to_data_uri(np.zeros((2, 2), dtype=np.uint8))[:30]
    'data:image/png;base64,iVBORw0K'
    """
    arr = np.ascontiguousarray(_as_uint8_hwc(image))
    height, width, channels = arr.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), arr.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    png = b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
