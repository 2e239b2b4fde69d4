"""Every side effect of a run: one module per agent type, plus the write-back to Postgres."""
