"""Side-by-side benchmarks (`python -m bench.run`): ratios measured in one run."""
