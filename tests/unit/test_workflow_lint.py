"""The workflow's files are snakefmt-clean (`make lint` runs the same check).

`snakemake --lint` on the real files is tests/integration/test_workflow.py's
test_lint_is_clean (after the ci study, in its copy of the workflow): not repeated here.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from support import REPO


def test_snakefmt_is_clean():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    assert snakefmt, "snakefmt is not installed beside this python (pip install -e '.[test]')"
    with open(REPO / "pyproject.toml", "rb") as f:
        line_length = tomllib.load(f)["tool"]["ruff"]["line-length"]  # as the Makefile's
    proc = subprocess.run(
        [snakefmt, "--check", "--line-length", str(line_length), "Snakefile", "workflow/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"snakefmt would reformat (run `snakefmt --line-length {line_length} Snakefile "
        f"workflow/`):\n{proc.stdout}{proc.stderr}"
    )
