"""`make parity` itself, on stub scripts: any failing script fails the target, and the report
still gets every section. The real scripts need torch and minutes; a stub venv whose `python`
prints a row (and fails for the script named in PARITY_FAIL) exercises the recipe's logic."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "layers",
    "htdemucs",
    "kokoro",
    "snac",
    "orpheus_lm",
    "orpheus",
    "csm",
    "mimi",
    "sam_audio",
)

STUB_PYTHON = """#!/bin/sh
# `python -c '...site...'`: the site-packages folder; `python tools/parity/X.py`: a report row
if [ "$1" = "-c" ]; then echo "$(dirname "$0")/../site"; exit 0; fi
name=$(basename "$1" .py)
echo "| $name | stub row |"
if [ "$name" = "$PARITY_FAIL" ]; then exit 3; fi
"""


def _make_parity(tmp_path: Path, fail: str) -> tuple[subprocess.CompletedProcess, str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "site").mkdir()
    for name, text in (("python", STUB_PYTHON), ("pip", "#!/bin/sh\nexit 0\n")):
        (venv / "bin" / name).write_text(text)
        (venv / "bin" / name).chmod(0o755)
    out = tmp_path / "parity.md"
    proc = subprocess.run(
        ["make", "-s", "parity", f"PARITY_VENV={venv}", f"PARITY_OUT={out}", "PARITY_DEPS="],
        cwd=ROOT,
        env={**os.environ, "PARITY_FAIL": fail},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, out.read_text()


@pytest.mark.parametrize("fail", SCRIPTS)
def test_any_failing_script_fails_the_target_and_the_report_is_complete(tmp_path, fail):
    committed = (ROOT / "docs" / "parity.md").read_bytes()
    proc, report = _make_parity(tmp_path, fail)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert f"tools/parity/{fail}.py" in proc.stderr
    assert f"**tools/parity/{fail}.py failed (exit 3).**" in report
    for name in SCRIPTS:  # the scripts after the failing one ran too
        assert f"| {name} | stub row |" in report
        assert f"(tools/parity/{name}.py: " in report
    assert report.count("failed (exit") == 1
    assert (ROOT / "docs" / "parity.md").read_bytes() == committed  # PARITY_OUT was honoured


def test_all_passing_scripts_pass_the_target(tmp_path):
    proc, report = _make_parity(tmp_path, "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed" not in report
    assert all(f"| {name} | stub row |" in report for name in SCRIPTS)
    assert (tmp_path / "venv" / "site" / "workspace.pth").read_text().count("/src") >= 4
