"""Repository tooling run from the root: `python -m tools.<name>` (see the Makefile)."""
