"""The `vision` agent: an image to an OpenAI-compatible chat model, or to local Tesseract.

`task: "chat"` (default) sends the image as an `image_url` part next to the
prompt and answers exactly like the `llm` agent. `task: "ocr"` needs no
endpoint at all — Tesseract runs on the worker, for edge deployments — and
returns `{text, words, confidence}`. Tesseract is bounded by the node's
timeout (pytesseract kills it), so a hung OCR cannot outlive its node.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytesseract
from PIL import Image, UnidentifiedImageError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import media
from activities.llm import ModelClients, chat, chat_messages
from workflows.contract import AgentTask


class VisionAgent:
    """The `vision` agent: a chat model looking at the image, or Tesseract on the worker."""

    def __init__(self, clients: ModelClients, http: httpx.AsyncClient) -> None:
        self._clients = clients
        self._http = http

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """The model's answer about `config.image`, or the text OCR reads in it."""
        source = str(config["image"])
        if config.get("task") == "ocr":
            data = await media.load(self._http, source, "image")
            return await asyncio.to_thread(_ocr, data, str(config.get("language") or "eng"))
        return await chat(self._clients, config, chat_messages(config, media.as_image_url(source)))


def _ocr(data: bytes, language: str) -> dict[str, Any]:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ApplicationError(
            f"config.image: not an image Tesseract can read ({exc})",
            type="InvalidMedia",
            non_retryable=True,
        ) from None
    limit = activity.info().start_to_close_timeout
    timeout = max(1.0, limit.total_seconds() - 1) if limit else 0
    try:
        table = pytesseract.image_to_data(
            image, lang=language, output_type=pytesseract.Output.DICT, timeout=timeout
        )
    except pytesseract.TesseractError as exc:  # a RuntimeError too: caught first
        raise ApplicationError(
            f"OCR failed (config.language {language!r}?): {exc.message}",
            type="OcrFailed",
            non_retryable=True,
        ) from None
    except RuntimeError as exc:  # pytesseract's "Tesseract process timeout"
        raise ApplicationError(f"OCR: {exc}", type="OcrTimeout") from None
    except pytesseract.TesseractNotFoundError:
        raise ApplicationError(
            "task 'ocr' needs Tesseract on the worker (Debian: tesseract-ocr)",
            type="OcrUnavailable",
            non_retryable=True,
        ) from None
    words = [
        {
            "text": text,
            "confidence": float(conf),
            "box": [table["left"][i], table["top"][i], table["width"][i], table["height"][i]],
        }
        for i, (text, conf) in enumerate(zip(table["text"], table["conf"], strict=True))
        if str(text).strip() and float(conf) >= 0
    ]
    lines: dict[tuple[int, int, int], list[str]] = {}
    for i, text in enumerate(table["text"]):
        if str(text).strip():
            key = (table["block_num"][i], table["par_num"][i], table["line_num"][i])
            lines.setdefault(key, []).append(str(text))
    confidence = sum(w["confidence"] for w in words) / len(words) if words else 0.0
    return {
        "text": "\n".join(" ".join(ws) for ws in lines.values()),
        "words": words,
        "confidence": round(confidence, 2),
    }
