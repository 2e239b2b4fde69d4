"""Measurements run by hand, not by the tests; each module is a script with its own `--help`."""
