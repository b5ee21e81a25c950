"""Benchmarks behind `make bench` (run with `python -m bench --help` from the repository root).

Each benchmark is a module of this package with a NAME, a one-line DESCRIPTION and a
`run(ctx: bench.env.Context) -> dict` that starts its own processes against the dev infrastructure,
measures, prints a table and returns the figures written to bench/results/<NAME>-<UTC time>.json.
bench/__main__.py lists them; `--only NAME` runs one.
"""
