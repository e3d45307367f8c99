"""Benchmark harness: the leaderboard (jobs, aggregation, plots), model complexity, published numbers."""
