"""Fault injection: the whole stack under kills, restarts, cuts and delays (test_faults.py)."""
