"""Speech to text on the worker itself, for `audio` nodes without an endpoint.

faster-whisper (CTranslate2) is an optional extra, `meta-agent-worker[local-audio]`:
it brings onnxruntime and PyAV, which a worker that only calls model servers
should not carry. The model is `config.model` or `WHISPER_MODEL`: a CTranslate2
directory (what an offline edge box has) or a faster-whisper name such as
`tiny.en`, fetched from the Hugging Face hub on first use.

Models load once per worker process and are shared by every node that names
them. Decoding runs in a thread; cancellation is honoured between segments,
which is as fine-grained as the library allows (a segment is up to 30 s of audio).
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from typing import Any

from temporalio.exceptions import ApplicationError

_models: dict[str, Any] = {}
_loading = threading.Lock()


class _Stopped(Exception):
    """The node was cancelled while its audio was being decoded."""


async def transcribe(data: bytes, config: dict[str, Any]) -> dict[str, Any]:
    """`{text, language, duration_seconds}`, like the endpoint form."""
    name = str(config.get("model") or os.environ.get("WHISPER_MODEL") or "")
    if not name:
        raise ApplicationError(
            "config.model: transcribe without config.endpoint runs Whisper on the worker and "
            "needs a model: a CTranslate2 directory or a name like 'tiny.en' "
            "(or set WHISPER_MODEL)",
            type="InvalidConfig",
            non_retryable=True,
        )
    offered = _offered_models()
    if name not in offered:
        # A name would be fetched from the Hugging Face hub (outside the outbound policy, and
        # as large as a flow likes) and a path would read the worker's disk: a flow may use
        # only the models the operator offers.
        raise ApplicationError(
            f"config.model: {name!r} is not a Whisper model this worker offers "
            "(WHISPER_MODEL, WHISPER_ALLOWED_MODELS)",
            type="InvalidConfig",
            non_retryable=True,
        )
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_transcribe_blocking, name, data, config, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _offered_models() -> set[str]:
    listed = os.environ.get("WHISPER_ALLOWED_MODELS", "").split(",")
    return {m.strip() for m in [os.environ.get("WHISPER_MODEL", ""), *listed] if m.strip()}


def _transcribe_blocking(
    name: str, data: bytes, config: dict[str, Any], stop: threading.Event
) -> dict[str, Any]:
    model = _model(name)
    try:
        segments, info = model.transcribe(
            io.BytesIO(data),
            language=config.get("language") or None,
            initial_prompt=config.get("prompt") or None,
            beam_size=1,  # greedy: several times faster on CPU, close enough for tiny models
        )
        texts = []
        for segment in segments:  # lazy: each step decodes the next piece of audio
            if stop.is_set():
                raise _Stopped
            texts.append(segment.text.strip())
    except _Stopped:
        return {}
    except Exception as exc:  # PyAV's and CTranslate2's errors share no base class
        raise ApplicationError(
            f"config.audio: local Whisper could not transcribe it: {exc}",
            type="TranscriptionFailed",
            non_retryable=True,
        ) from None
    return {
        "text": " ".join(text for text in texts if text),
        "language": info.language,
        "duration_seconds": round(float(info.duration), 3),
    }


def _model(name: str) -> Any:
    with _loading:
        if name in _models:
            return _models[name]
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ApplicationError(
                "config.endpoint: transcribe without an endpoint needs faster-whisper on the "
                "worker: pip install 'meta-agent-worker[local-audio]'",
                type="TranscriptionUnavailable",
                non_retryable=True,
            ) from None
        try:
            model = WhisperModel(
                name,
                device="cpu",
                compute_type="int8",
                cpu_threads=int(os.environ.get("WHISPER_THREADS") or min(4, os.cpu_count() or 1)),
            )
        except Exception as exc:  # a bad path, an unknown name, no hub access
            raise ApplicationError(
                f"config.model: cannot load the local Whisper model {name!r}: {exc}",
                type="InvalidConfig",
                non_retryable=True,
            ) from None
        _models[name] = model
        return model
