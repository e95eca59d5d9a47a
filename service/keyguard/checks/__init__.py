"""Collectors, drift (fingerprints and transitions) and the scheduler that runs them."""
