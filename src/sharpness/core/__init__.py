"""Shared utilities every layer may use: repository paths, run folders on disk, progress bars, provenance, threads,
worker processes that end with their parent (lifeline)."""
