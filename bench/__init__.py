"""Benchmarks: each prints Keyguard and its baseline side by side from one run (loopback only)."""
