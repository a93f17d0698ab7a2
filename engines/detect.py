"""Text-region detector: PP-OCRv6 small DB detector (ONNX) shipped in the rapidocr wheel.

Comic art defeats page layout analysis, so engines that recognise text lines
(Tesseract, VLM crops) first ask this detector where the text is. The weights
come from the installed package: nothing is downloaded.
"""

from __future__ import annotations

import logging

import numpy as np

from engines.contract import EngineError, PageError


class TextDetector:
    """Finds text lines; returns 4-point quads (float32, shape (4, 2)) in image pixels."""

    def __init__(self, side: int = 736, limit_type: str = "min", box_thresh: float = 0.5, threads: int = 1):
        from importlib.metadata import version

        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self._ocr = RapidOCR(
            params={
                "Global.use_cls": False,
                "Global.use_rec": False,
                "Global.log_level": "error",
                "Det.limit_side_len": side,
                "Det.limit_type": limit_type,
                "Det.box_thresh": box_thresh,
                # One process per core: ONNX Runtime threads would oversubscribe.
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        self.version = f"PP-OCRv6_det_small (rapidocr {version('rapidocr')})"

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        try:
            out = self._ocr(rgb, use_det=True, use_cls=False, use_rec=False)
        except PageError:  # e.g. the worker's page timeout firing inside the detector
            raise
        except Exception as exc:  # e.g. ResizeImgError on extreme aspect ratios
            h, w = rgb.shape[:2]
            raise EngineError(f"text detector failed on a {w}x{h} image: {type(exc).__name__} {exc}".strip()) from None
        if out.boxes is None:
            return []
        return [np.asarray(q, dtype=np.float32) for q in out.boxes]
