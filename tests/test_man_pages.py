"""Every man page renders with man(1), with no groff warnings."""

import subprocess
from pathlib import Path

import pytest

MAN = Path(__file__).resolve().parent.parent / "man"


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.iterdir()))
def test_man_page_renders_cleanly(page):
    result = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], capture_output=True,
                            text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "NAME" in result.stdout and "DESCRIPTION" in result.stdout
