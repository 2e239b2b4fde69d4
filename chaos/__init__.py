"""Fault injection: a mixed workload on a throwaway stack while its servers are stopped and its
workers killed, then the run invariant checked on every run (`python -m chaos`).
"""
