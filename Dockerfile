# The worker image: `meta-agent worker` against the Postgres and Temporal in its environment.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Local fallbacks of the vision (OCR) and audio (speech; Whisper via the local-audio extra)
# agents need no model server.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng espeak-ng \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 worker
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p flow_language workflows activities persistence workers \
    && touch workflows/__init__.py activities/__init__.py persistence/__init__.py workers/__init__.py \
    && pip install ".[local-audio]" \
    && pip uninstall -y meta-agent-worker

COPY flow_language ./flow_language
COPY workflows ./workflows
COPY activities ./activities
COPY persistence ./persistence
COPY workers ./workers
RUN pip install --no-deps .

USER worker
# Migrations are idempotent and serialised by an advisory lock, so every replica may run them.
CMD ["sh", "-c", "meta-agent migrate && exec meta-agent worker"]
