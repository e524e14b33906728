"""A minimal face-mask API in the style of the public projects, for side-by-side load tests.

    MASKOPS_MODELS_DIR=models .venv/bin/python -m uvicorn --app-dir bench reference_server:app --port 8001

What public face-mask APIs typically do: load the model at import, one ``async def`` route that
reads the upload, decodes it and calls the model inline on the event loop, one request at a time,
and returns JSON. No worker pool, no limits, no content sniffing, no metrics. It runs the same
model work as maskops (YuNet + the shipped ONNX classifier through ``FaceMaskPipeline``), so a
side-by-side run measures the serving design, not the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile

from maskops.detect.pipeline import FaceMaskPipeline

MODEL = Path(os.environ.get("MASKOPS_MODELS_DIR", "models")) / "facemask.onnx"

app = FastAPI(title="reference face-mask API")
pipeline = FaceMaskPipeline.from_paths(MODEL)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/detect")
async def detect(file: UploadFile = File(...)) -> dict[str, object]:
    data = await file.read()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise HTTPException(status_code=400, detail="invalid image")
    result = pipeline(image)
    return {"faces": result.records(pipeline.class_names)}
