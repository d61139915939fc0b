"""The committed reference result rebuilds its statistics and figures, byte for byte, from
its tidy per-seed tables alone: the README's `make figures` on a clean copy."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rl.analysis.results import REFERENCE_FILES

from support import REPO


def _references() -> list[Path]:
    return sorted(p.parent for p in (REPO / "reference").glob("*/config.yaml"))


def test_make_figures_is_the_documented_command():
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^REFERENCE \?= reference/paper$", make, re.M)
    assert "python -m rl figures --from $(REFERENCE)" in make
    assert "make figures" in (REPO / "README.md").read_text()
    assert _references(), "no committed reference result under reference/"


@pytest.mark.parametrize("ref", _references(), ids=lambda p: p.name)
def test_figures_rebuild_byte_identical_from_the_tidy_tables_alone(ref, tmp_path):
    clean = tmp_path / ref.name
    for rel in REFERENCE_FILES:  # only the inputs: no statistics, no figures, no results/
        if (ref / rel).is_file():
            (clean / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ref / rel, clean / rel)
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "figures", "--from", str(clean)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    committed = [
        p
        for p in sorted(ref.rglob("*"))
        if p.suffix in (".png", ".pdf", ".csv")
        and p.relative_to(ref).as_posix() not in REFERENCE_FILES
    ]
    assert len(committed) >= 10
    for path in committed:
        rel = path.relative_to(ref)
        assert (clean / rel).read_bytes() == path.read_bytes(), f"{rel} differs"


@pytest.mark.parametrize("ref", _references(), ids=lambda p: p.name)
def test_make_figures_leaves_a_clean_clone_clean(ref, tmp_path):
    """Rebuilding in place rewrites the statistics and figures with the same bytes and keeps
    the provenance records that describe them: nothing tracked changes."""
    clone = tmp_path / ref.name
    shutil.copytree(ref, clone)

    def snapshot():
        return {p.relative_to(clone): p.read_bytes() for p in clone.rglob("*") if p.is_file()}

    before = snapshot()
    proc = subprocess.run(
        [sys.executable, "-m", "rl", "figures", "--from", str(clone)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stderr
    after = snapshot()
    changed = sorted(str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"rebuilt files differ from the committed ones: {changed}"
