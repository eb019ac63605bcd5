"""Benchmark-only DuckDB peers of Spark stages: the same logic on the same input, so a benchmark
can report Spark's and DuckDB's time per stage (see ``check_peers.py``). Not used by the pipeline."""
