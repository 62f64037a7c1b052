"""Sweeps: the summary table of a multirun, GPU slots for parallel jobs, Optuna pruning."""

from mnistlab.sweeps.summary import JobRecord, collect_jobs, seed_groups, to_csv, to_markdown, write_summary

__all__ = ["JobRecord", "collect_jobs", "seed_groups", "to_csv", "to_markdown", "write_summary"]
