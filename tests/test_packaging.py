"""`pip install .` gives what the checkout has: every subpackage and the man pages
(a wheel once left out styxgrid.security, and every command but --help failed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_package_and_the_man_pages(tmp_path):
    source = tmp_path / "src"           # a copy: building writes into the tree it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("styxgrid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = sorted(str(init.parent.relative_to(ROOT))
                      for init in (ROOT / "styxgrid").rglob("__init__.py"))
    assert packages and all(f"{p}/__init__.py" in names for p in packages), packages
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
