"""Repository hygiene: files that say one thing, and no litter from tools."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# "No file over ~400 lines" (a service that grows turns a file into a package): a little slack, no exceptions.
MAX_LINES = 420
SOURCE_DIRS = ("libs", "services", "bench", "tests", "tools", "docs", "deploy")


def _tracked(*patterns: str) -> list[Path]:
    """The files git tracks (or would: untracked but not ignored) matching the patterns."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *patterns],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_no_source_file_is_over_the_line_limit() -> None:
    files = _tracked(*(f"{d}/*.py" for d in SOURCE_DIRS))
    assert len(files) > 50, "git ls-files found too few files: is this a git checkout?"
    long = sorted(f"{f.relative_to(ROOT)}: {n} lines" for f in files
                  if (n := len(f.read_text(errors="replace").splitlines())) > MAX_LINES)
    assert not long, f"files over {MAX_LINES} lines (split them by concern into a package):\n" + "\n".join(long)


def test_no_tracked_path_holds_an_unresolved_placeholder() -> None:
    """A tool run with a config whose ${...} lookup had no value writes into a folder of that name."""
    litter = [p for p in _tracked() if "${" in str(p.relative_to(ROOT))]
    assert not litter, litter


def test_every_log4j_lookup_has_a_default() -> None:
    for config in (ROOT / "deploy").rglob("*log4j*.xml"):
        bare = [m for m in re.findall(r"\$\{sys:[^}]*\}", config.read_text()) if ":-" not in m]
        assert not bare, f"{config.relative_to(ROOT)}: {bare} without a default (${{sys:name:-default}})"
