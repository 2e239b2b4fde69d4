"""The vision and audio agents: Tesseract OCR, an OCR-backed chat peer, espeak-ng and Whisper.

No vision chat model installs offline, so the OpenAI-compatible image peer is
a small server here that answers from real Tesseract OCR of the image it gets.
Speech is made by espeak-ng and transcribed by Whisper tiny.en, through
faster-whisper-server and on the worker itself (faster-whisper).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytesseract
import pytest
from PIL import Image, ImageDraw, ImageFont
from temporalio.client import WorkflowFailureError

from activities import local_whisper
from activities.audio import _espeak
from flow_language.drawing import edge, node
from tests.flows import FlowWorker
from tests.http_peer import HttpPeer, Reply, Request
from tests.model_servers import ModelServer, whisper_model_dir
from tests.test_agent_llm import completion

pytestmark = pytest.mark.peers


def text_image(text: str) -> bytes:
    image = Image.new("RGB", (760, 140), "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font=ImageFont.load_default(size=48))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def one_node_flow(node_id: str, type_: str, config: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node(node_id, type_, config, **data),
            node("done", "end", {"outputs": {node_id: f"{{{{ nodes.{node_id}.output }}}}"}}),
        ],
        "edges": [edge("start", node_id), edge(node_id, "done")],
    }


def ocr_chat_peer(http_peer: HttpPeer, path: str = "/v1/chat/completions") -> list[Request]:
    """An OpenAI-style chat endpoint whose 'model' reads the image with Tesseract."""
    seen: list[Request] = []

    def answer(request: Request) -> Reply:
        seen.append(request)
        parts = request.json()["messages"][-1]["content"]
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        return Reply(200, completion(pytesseract.image_to_string(image).strip()))

    http_peer.route("POST", path, answer)
    return seen


async def test_ocr_runs_tesseract_locally_on_base64_and_on_a_url(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    png = text_image("INVOICE 4711 TOTAL 99.50")
    http_peer.route("GET", "/scan.png", Reply(200, png))
    for image in (base64.b64encode(png).decode(), f"{http_peer.base}/scan.png"):
        flow = one_node_flow("read", "vision", {"task": "ocr", "image": image})
        result, run_id = await flow_worker.run(flow)
        out = result.outputs["read"]
        assert out["text"] == "INVOICE 4711 TOTAL 99.50"
        assert [w["text"] for w in out["words"]] == ["INVOICE", "4711", "TOTAL", "99.50"]
        assert out["confidence"] > 50
        row = (await flow_worker.task_rows(run_id))["read"]
        assert row["status"] == "completed"
        assert row["outputs"]["text"] == out["text"]


async def test_a_malformed_image_fails_at_once_naming_the_field(flow_worker: FlowWorker) -> None:
    flow = one_node_flow(
        "read", "vision", {"task": "ocr", "image": "not an image!"}, retry={"maxAttempts": 3}
    )
    handle = await flow_worker.start(flow)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    row = (await flow_worker.task_rows(handle.id))["read"]
    assert row["retry_count"] == 0
    assert "config.image: neither an http(s) URL, a data URL nor base64" in row["error"]


async def test_vision_chat_sends_the_image_as_a_data_url_part_beside_the_prompt(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    seen = ocr_chat_peer(http_peer)
    png = text_image("SHIP TO LYON")
    config = {
        "endpoint": f"{http_peer.base}/v1",
        "model": "ocr-chat",
        "prompt": "What does the label say?",
        "image": base64.b64encode(png).decode(),
        "temperature": 0,
    }
    result, run_id = await flow_worker.run(one_node_flow("look", "vision", config))
    assert result.outputs["look"]["text"] == "SHIP TO LYON"
    assert result.outputs["look"]["usage"]["total_tokens"] == 12
    parts = seen[0].json()["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What does the label say?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert (await flow_worker.task_rows(run_id))["look"]["total_tokens"] == 12


def speak_then_hear(transcribe: dict[str, Any]) -> dict[str, Any]:
    """espeak-ng says `input.sentence`; a transcribe node with these settings hears it back."""
    hear = {"task": "transcribe", "audio": "{{ nodes.say.output.audio_base64 }}", **transcribe}
    return {
        "nodes": [
            node("start", "start"),
            node("say", "audio", {"task": "speak", "text": "{{ input.sentence }}"}),
            node("hear", "audio", hear),
            node("done", "end", {"outputs": {"heard": "{{ nodes.hear.output }}"}}),
        ],
        "edges": [edge("start", "say"), edge("say", "hear"), edge("hear", "done")],
    }


async def test_speech_from_espeak_is_transcribed_back_by_whisper(
    flow_worker: FlowWorker, whisper_server: ModelServer
) -> None:
    result, run_id = await flow_worker.run(
        speak_then_hear({"endpoint": whisper_server.base_url, "language": "en"}),
        {"sentence": "The purchase order is approved."},
    )
    heard = result.outputs["heard"]
    words = heard["text"].lower()
    assert "order" in words
    assert "approved" in words
    assert heard["duration_seconds"] > 1
    rows = await flow_worker.task_rows(run_id)
    spoken = rows["say"]["outputs"]
    assert spoken["format"] == "wav"
    assert spoken["bytes"] == len(base64.b64decode(spoken["audio_base64"]))
    assert 1 < spoken["duration_seconds"] < 5


async def test_speak_through_an_endpoint_returns_its_wav(
    flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    wav = await _espeak("hello", {})
    http_peer.route("POST", "/v1/audio/speech", Reply(200, wav))
    config = {
        "task": "speak",
        "endpoint": f"{http_peer.base}/v1",
        "text": "hello",
        "voice": "nova",
    }
    result, _ = await flow_worker.run(one_node_flow("say", "audio", config))
    assert base64.b64decode(result.outputs["say"]["audio_base64"]) == wav
    sent = json.loads(http_peer.requests[-1].body)
    assert sent["input"] == "hello"
    assert sent["voice"] == "nova"
    assert sent["response_format"] == "wav"


# -- transcription on the worker, with no endpoint ---------------------------------------------


@pytest.fixture
def whisper_dir(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test model, offered to flows as the operator would (WHISPER_ALLOWED_MODELS)."""
    directory = str(whisper_model_dir())
    monkeypatch.setenv("WHISPER_ALLOWED_MODELS", f"{directory},other-offered")
    return directory


async def test_a_flow_may_use_only_the_whisper_models_the_worker_offers(
    flow_worker: FlowWorker, whisper_dir: str
) -> None:
    wav = base64.b64encode(await _espeak("hello", {})).decode()
    for model in ("large-v3", "/etc", f"{whisper_dir}/.."):
        flow = one_node_flow("m", "audio", {"task": "transcribe", "model": model, "audio": wav})
        row = await flow_worker.failed_row(flow, "m")
        assert row["retry_count"] == 0
        assert f"config.model: {model!r} is not a Whisper model this worker offers" in row["error"]


async def test_without_an_endpoint_the_worker_transcribes_with_its_own_whisper(
    flow_worker: FlowWorker, whisper_dir: str
) -> None:
    result, run_id = await flow_worker.run(
        speak_then_hear({"model": whisper_dir}), {"sentence": "The purchase order is approved."}
    )
    heard = result.outputs["heard"]
    assert "order" in heard["text"].lower()
    assert "approved" in heard["text"].lower()
    assert heard["language"] == "en"
    assert 1 < heard["duration_seconds"] < 5
    row = (await flow_worker.task_rows(run_id))["hear"]
    assert row["outputs"] == heard
    assert row["retry_count"] == 0


async def test_local_transcription_names_a_bad_model_or_bad_audio_and_does_not_retry(
    flow_worker: FlowWorker, whisper_dir: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    wav = base64.b64encode(await _espeak("hello", {})).decode()
    missing = str(tmp_path / "no-model-here")
    monkeypatch.setenv("WHISPER_ALLOWED_MODELS", f"{whisper_dir},{missing}")
    no_model = one_node_flow(
        "m", "audio", {"task": "transcribe", "model": missing, "audio": wav}, retry=retry
    )
    row = await flow_worker.failed_row(no_model, "m")
    assert row["retry_count"] == 0
    assert f"config.model: cannot load the local Whisper model {missing!r}" in row["error"]

    noise = base64.b64encode(b"this is not audio at all" * 40).decode()
    not_audio = one_node_flow(
        "m", "audio", {"task": "transcribe", "model": whisper_dir, "audio": noise}, retry=retry
    )
    row = await flow_worker.failed_row(not_audio, "m")
    assert row["retry_count"] == 0
    assert "config.audio: local Whisper could not transcribe it" in row["error"]


async def test_cancelling_a_local_transcription_stops_its_decoding_thread(
    whisper_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread cannot be killed; it must notice the stop between segments and return early."""
    long_speech = await _espeak(" ".join(["The purchase order is approved."] * 40), {})
    finished = threading.Event()
    results: list[dict[str, Any]] = []
    decode = local_whisper._transcribe_blocking

    def watched(*args: Any) -> dict[str, Any]:
        try:
            results.append(decode(*args))
            return results[-1]
        finally:
            finished.set()

    monkeypatch.setattr(local_whisper, "_transcribe_blocking", watched)
    call = asyncio.create_task(local_whisper.transcribe(long_speech, {"model": whisper_dir}))
    await asyncio.sleep(1)
    assert not finished.is_set(), "a minute of speech should still be decoding"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.to_thread(finished.wait, 60)
    assert results == [{}], "the thread decoded everything instead of stopping"


# -- the error classes, for each endpoint-backed task ------------------------------------------


def _vision(base: str) -> tuple[str, dict[str, Any]]:
    png = base64.b64encode(text_image("X")).decode()
    return "/v1/chat/completions", {"endpoint": f"{base}/v1", "prompt": "?", "image": png}


def _transcribe(base: str) -> tuple[str, dict[str, Any]]:
    wav = base64.b64encode(b"RIFF" + b"\0" * 64).decode()
    return "/v1/audio/transcriptions", {
        "task": "transcribe",
        "endpoint": f"{base}/v1",
        "audio": wav,
    }


def _speak(base: str) -> tuple[str, dict[str, Any]]:
    return "/v1/audio/speech", {"task": "speak", "endpoint": f"{base}/v1", "text": "hi"}


KINDS: dict[str, tuple[str, Callable[[str], tuple[str, dict[str, Any]]]]] = {
    "vision-chat": ("vision", _vision),
    "audio-transcribe": ("audio", _transcribe),
    "audio-speak": ("audio", _speak),
}
GOOD = {
    "/v1/chat/completions": completion("ok"),
    "/v1/audio/transcriptions": {"text": "ok", "language": "en", "duration": 1.0},
    "/v1/audio/speech": None,  # filled with a real WAV below
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_retries_refusals_cancellation_and_timeouts_of_each_endpoint_task(
    kind: str, flow_worker: FlowWorker, http_peer: HttpPeer
) -> None:
    node_type, make = KINDS[kind]
    good: Any = GOOD
    good = dict(good)
    good["/v1/audio/speech"] = await _espeak("ok", {})
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}

    # 503 then success: one retry.
    path, config = make(f"{http_peer.base}/flaky")
    replies = iter([Reply(503, {"error": {"message": "busy"}}), Reply(200, good[path])])
    http_peer.route("POST", f"/flaky{path}", lambda _r: next(replies))
    _, run_id = await flow_worker.run(one_node_flow("m", node_type, config, retry=retry))
    assert (await flow_worker.task_rows(run_id))["m"]["retry_count"] == 1

    # 400: failed at the first attempt, with the server's reason.
    path, config = make(f"{http_peer.base}/bad")
    http_peer.route("POST", f"/bad{path}", Reply(400, {"error": {"message": "unsupported"}}))
    handle = await flow_worker.start(one_node_flow("m", node_type, config, retry=retry))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    row = (await flow_worker.task_rows(handle.id))["m"]
    assert (row["status"], row["retry_count"]) == ("failed", 0)
    assert "answered 400: unsupported" in row["error"]

    # A call still running when the run is cancelled is aborted.
    path, config = make(f"{http_peer.base}/slow")
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(_r: Request) -> Reply:
        loop.call_soon_threadsafe(arrived.set)
        return Reply(200, good[path], delay=20)

    http_peer.route("POST", f"/slow{path}", slow)
    handle = await flow_worker.start(one_node_flow("m", node_type, config, timeoutSeconds=60))
    await asyncio.wait_for(arrived.wait(), 20)
    assert await flow_worker.cancel_and_wait(handle) < 10
    assert (await flow_worker.task_rows(handle.id))["m"]["status"] == "cancelled"

    # A call that outlives the node's timeoutSeconds fails the node.
    path, config = make(f"{http_peer.base}/hang")
    http_peer.route("POST", f"/hang{path}", Reply(200, good[path], delay=15))
    began = time.monotonic()
    definition = one_node_flow("m", node_type, config, timeoutSeconds=2, retry={"maxAttempts": 1})
    row = await flow_worker.failed_row(definition, "m")
    assert time.monotonic() - began < 12
    assert row["status"] == "failed"


async def test_local_fallbacks_name_the_field_behind_a_failure_and_do_not_retry(
    flow_worker: FlowWorker,
) -> None:
    retry = {"maxAttempts": 3, "initialIntervalSeconds": 0.1}
    png = base64.b64encode(text_image("HELLO")).decode()
    ocr = one_node_flow(
        "m", "vision", {"task": "ocr", "image": png, "language": "xyz"}, retry=retry
    )
    row = await flow_worker.failed_row(ocr, "m")
    assert row["retry_count"] == 0
    assert "OCR failed (config.language 'xyz'?)" in row["error"]

    speak = one_node_flow(
        "m", "audio", {"task": "speak", "text": "hi", "voice": "nope"}, retry=retry
    )
    row = await flow_worker.failed_row(speak, "m")
    assert row["retry_count"] == 0
    assert "espeak-ng failed (config.voice 'nope'?)" in row["error"]
    assert "voice does not exist" in row["error"]
