"""Evaluation harness: `run_bench` over datasets, robustness controls, report (see `runner`)."""

from topreward.bench.runner import BenchConfig, BenchDataset, run_bench

__all__ = ["BenchConfig", "BenchDataset", "run_bench"]
