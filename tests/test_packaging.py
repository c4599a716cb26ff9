"""`pip install .` gives what the checkout has: every subpackage and the man pages
(a wheel once left out styxgrid.security, and every command but --help failed), and
the installed command runs a grid from a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"                # a copy: building writes into the tree it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(out), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [found] = out.glob("styxgrid-*.whl")
    return found


def test_the_wheel_holds_every_package_and_the_man_pages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = sorted(str(init.parent.relative_to(ROOT))
                      for init in (ROOT / "styxgrid").rglob("__init__.py"))
    assert packages and all(f"{p}/__init__.py" in names for p in packages), packages
    assert any(".dist-info/" in n and n.endswith("/LICENSE") for n in names), names
    man = sorted(page.name for page in (ROOT / "man").iterdir())
    assert all(any(n.endswith(f"/data/share/man/man{page[-1]}/{page}") for n in names)
               for page in man), man


def test_styxgrid_version_names_the_installed_version():
    from importlib.metadata import version
    result = subprocess.run([sys.executable, "-m", "styxgrid", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == f"styxgrid {version('styxgrid')}\n"


def test_without_pyfuse3_mount_says_in_one_line_what_to_install(tmp_path):
    hide = "import sys; sys.modules['pyfuse3'] = None; from styxgrid.cli import main; "
    for args in (["mount", str(tmp_path / "s.sock"), str(tmp_path)],
                 ["up", "--state", str(tmp_path / "state"), "--mount", str(tmp_path / "m")]):
        result = subprocess.run([sys.executable, "-c", hide + f"sys.exit(main({args!r}))"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (f"styxgrid: {args[0]}: FUSE support is not installed: pip "
                                 "install 'styxgrid[fuse]' (it needs the fuse3 and "
                                 "libfuse3-dev packages)\n")


def test_the_installed_command_runs_a_grid_from_a_fresh_venv(wheel, short_tmp):
    """Not editable, not the checkout's venv: the wheel in a venv of its own, then
    `styxgrid up`, submit, wait and cat as a newcomer types them."""
    venv = Path(short_tmp) / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    styxgrid = str(venv / "bin" / "styxgrid")
    home = Path(short_tmp) / "grid"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STYXGRID", "PYTHON"))}
    env["HOME"] = str(home)                         # no stored login of the test's user

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([styxgrid, *args], cwd=home, env=env, capture_output=True,
                              text=True, timeout=120)
    up = subprocess.Popen([styxgrid, "up", "--workers", "2"], cwd=home, env=env,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert up.stderr is not None
        for line in up.stderr:
            if "up: scheduler on" in line:
                break
        else:
            raise AssertionError(f"up ended: {up.wait()}")
        job = run("submit", "-n", "3", "--", "sh", "-c", "echo task $STYXGRID_TASK")
        assert job.returncode == 0 and job.stdout.strip().isdigit(), job.stderr
        waited = run("wait", job.stdout.strip())
        assert waited.returncode == 0 and " done " in waited.stdout, waited
        out = run("cat", f"jobs/{job.stdout.strip()}/stdout")
        assert out.stdout == "task 0\ntask 1\ntask 2\n", out
        assert run("--version").stdout.startswith("styxgrid ")
    finally:
        up.terminate()
        assert up.wait(20) == 0
