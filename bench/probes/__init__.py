"""Probes that replay the attacks and failures the security and integrity issues measured, against the fake
upstream in tests/, and print what happened (``python -m bench.probes.NAME`` from the repository root).
They measure; the pass/fail checks of the same behaviour are tests in tests/."""
