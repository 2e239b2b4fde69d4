"""The tests; the modules whose names do not start with `test_` are their shared support."""
