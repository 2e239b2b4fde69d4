"""Deterministic interpretation of flow definitions. No I/O lives here."""
