"""Configuration, the worker process, the dev stack and the `meta-agent` CLI."""
