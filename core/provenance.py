"""Which prunetui computed a result: the package version and, from a git checkout, its commit.

Stored with every result (``RunResult.version``) and printed in a report's Setup, so a reader
can tell which code produced which numbers. No torch.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.cache
def version() -> str:
    """``0.1.0``, plus ``+g<commit>`` from a git checkout and ``.dirty`` when it has
    uncommitted changes to tracked files (the numbers may then come from code no commit
    holds)."""
    try:
        base = metadata.version("prunetui")
    except metadata.PackageNotFoundError:
        base = "unknown"
    here = Path(__file__).resolve().parent
    try:
        top, commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--show-toplevel", "--short=10", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True).stdout.split()
        if Path(top).resolve() != here.parent:  # installed inside some other repository
            return base
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no", "--", str(here.parent)],
                               capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError, ValueError):
        return base  # an installed wheel, or no git
    return f"{base}+g{commit}" + (".dirty" if dirty.stdout.strip() else "")
