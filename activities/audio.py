"""The `audio` agent: speech to text and text to speech.

`transcribe` posts the audio (URL, data URL or base64) to an OpenAI-compatible
`/v1/audio/transcriptions` (e.g. faster-whisper-server) or, with no endpoint
configured, runs faster-whisper on the worker (`activities.local_whisper`);
either way it returns `{text, language, duration_seconds}`. `speak` asks
`/v1/audio/speech` for a WAV, or, with no endpoint, runs espeak-ng on the
worker; either way the output is `{audio_base64, format: "wav",
duration_seconds, bytes}`. The WAV travels in history and in the task row,
so it is capped (`maxAudioBytes`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import shutil
import wave
from typing import Any

import httpx
import openai
from temporalio.exceptions import ApplicationError

from activities import local_whisper, media
from activities.llm import ModelClients, model_failure, node_timeout
from workflows.contract import AgentTask

DEFAULT_MAX_AUDIO_BYTES = 1_500_000  # under Temporal's 2 MB payload limit once base64'd


class AudioAgent:
    """The `audio` agent: `transcribe` or `speak`, at an endpoint or on the worker."""

    def __init__(self, clients: ModelClients, http: httpx.AsyncClient) -> None:
        self._clients = clients
        self._http = http

    async def __call__(self, config: dict[str, Any], task: AgentTask) -> dict[str, Any]:
        """One transcription or one spoken WAV, as `config.task` says."""
        if config["task"] == "transcribe":
            return await self._transcribe(config)
        return await self._speak(config)

    def _endpoint(self, config: dict[str, Any]) -> str | None:
        return config.get("endpoint") or os.environ.get("OPENAI_BASE_URL")

    async def _transcribe(self, config: dict[str, Any]) -> dict[str, Any]:
        if not config.get("audio"):
            raise ApplicationError(
                "config.audio: transcribe needs the audio (URL, data URL or base64)",
                type="InvalidConfig",
                non_retryable=True,
            )
        data = await media.load(self._http, str(config["audio"]), "audio")
        if not self._endpoint(config):
            return await local_whisper.transcribe(data, config)
        mime = media.sniff_type(data, "audio/wav")
        extension = mime.split("/")[-1].replace("mpeg", "mp3")
        options: dict[str, Any] = {}
        for key in ("language", "prompt"):
            if config.get(key):
                options[key] = config[key]
        try:
            answer = await self._clients.get(config).audio.transcriptions.create(
                model=str(config.get("model") or "whisper-1"),
                file=(f"audio.{extension}", data, mime),
                response_format="verbose_json",
                timeout=node_timeout(),
                **options,
            )
        except openai.OpenAIError as exc:
            raise model_failure(exc) from None
        return {
            "text": str(getattr(answer, "text", "")).strip(),
            "language": getattr(answer, "language", None),
            "duration_seconds": getattr(answer, "duration", None),
        }

    async def _speak(self, config: dict[str, Any]) -> dict[str, Any]:
        text = str(config.get("text") or "")
        if not text.strip():
            raise ApplicationError(
                "config.text: speak needs something to say",
                type="InvalidConfig",
                non_retryable=True,
            )
        if self._endpoint(config):
            try:
                response = await self._clients.get(config).audio.speech.create(
                    model=str(config.get("model") or "tts-1"),
                    voice=str(config.get("voice") or "alloy"),
                    input=text,
                    response_format="wav",
                    speed=float(config.get("speed") or 1.0),
                    timeout=node_timeout(),
                )
            except openai.OpenAIError as exc:
                raise model_failure(exc) from None
            wav = response.content
        else:
            wav = await _espeak(text, config)
        cap = int(config.get("maxAudioBytes") or DEFAULT_MAX_AUDIO_BYTES)
        if len(wav) > cap:
            raise ApplicationError(
                f"the speech is {len(wav)} bytes, over maxAudioBytes={cap}; say less per node",
                type="AudioTooLarge",
                non_retryable=True,
            )
        return {
            "audio_base64": base64.b64encode(wav).decode(),
            "format": "wav",
            "duration_seconds": _duration(wav),
            "bytes": len(wav),
        }


async def _espeak(text: str, config: dict[str, Any]) -> bytes:
    """Local speech with espeak-ng, killed if the node is cancelled."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise ApplicationError(
            "speak without config.endpoint needs espeak-ng on the worker (Debian: espeak-ng)",
            type="SpeechUnavailable",
            non_retryable=True,
        )
    words_per_minute = round(175 * float(config.get("speed") or 1.0))
    voice = str(config.get("voice") or config.get("language") or "en-us")
    process = await asyncio.create_subprocess_exec(
        binary, "-v", voice, "-s", str(words_per_minute), "--stdout", "--", text,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    if process.returncode != 0 or not stdout:
        raise ApplicationError(
            f"espeak-ng failed (config.voice {voice!r}?): {stderr.decode()[-300:]}",
            type="SpeechFailed",
            non_retryable=True,
        )
    return _with_true_length(stdout)


def _with_true_length(streamed: bytes) -> bytes:
    """espeak-ng's --stdout WAV has a placeholder length in its header; write the real one."""
    with wave.open(io.BytesIO(streamed)) as reader:
        params = reader.getparams()
        frames = reader.readframes(reader.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(frames)
    return out.getvalue()


def _duration(wav: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            frames = len(reader.readframes(reader.getnframes()))
            frame_size = reader.getsampwidth() * reader.getnchannels()
            return round(frames / frame_size / reader.getframerate(), 3)
    except (wave.Error, EOFError):
        return None
