"""Evaluation harness: `run_bench` over datasets with robustness controls (`runner`), its report
(`report`), named dataset lists (`presets`) and the answer-token study (`tokens`, TOPReward App. B).

It imports the methods and everything below them; only the command line imports it.
"""

from topreward.bench.runner import BenchConfig, BenchDataset, run_bench

__all__ = ["BenchConfig", "BenchDataset", "run_bench"]
