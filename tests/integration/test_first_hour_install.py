"""The README's "Install" lines, run as written on a machine that has only Debian's Python: a fresh virtualenv
from /usr/bin/python3 (no system site-packages), the project from a copy of the checkout, its dependencies
from the package index. The one change: the checkout's placeholder path names the copy. The quick start
shows the same lines."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import ROOT

PLACEHOLDER = "/path/to/snakemake-singcontain"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def install_section(markdown: str) -> str:
    return markdown.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]


def readme_blocks() -> list[str]:
    return [body for lang, body in BLOCK.findall(install_section((ROOT / "README.md").read_text())) if lang == "bash"]


def test_readme_and_quickstart_give_the_same_install_lines():
    venv_and_install, wheel = readme_blocks()
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    assert "pip install snakemake-singcontain" not in quickstart + (ROOT / "README.md").read_text()
    assert f"```\n{venv_and_install}```" in quickstart
    for line in wheel.splitlines():
        assert f"`{line}`" in quickstart, line


@pytest.fixture
def fresh_home():
    home = Path(tempfile.mkdtemp(prefix="singcontain-install-"))
    checkout = home / "checkout"
    # A copy, so that building the wheel leaves nothing in this checkout.
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                   ".snakemake", ".hypothesis"))
    yield home, checkout
    shutil.rmtree(home, ignore_errors=True)


def run_as_written(script: str, home: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PIP_CACHE_DIR": os.path.expanduser("~/.cache/pip")}  # this machine's cache: quick, same packages
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=env, cwd=home, capture_output=True,
                          text=True, timeout=900)


def test_readme_install_lines_run_as_written(fresh_home):
    home, checkout = fresh_home
    venv_and_install, wheel = (block.replace(PLACEHOLDER, str(checkout)) for block in readme_blocks())
    # After the lines: what a user types next works, from the activated virtualenv.
    done = run_as_written(venv_and_install + "singcontain --version\nsnakemake --version\ncommand -v singcontain\n"
                          "python -c 'import sys; print(sys.prefix != sys.base_prefix)'\n", home)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    assert "singcontain" in lines and re.match(r"(8\.(3\d|[4-9]\d)|9)\.", lines[lines.index("singcontain") + 2])
    assert str(home / "singcontain" / "bin" / "singcontain") in lines and lines[-1] == "True"
    # The policy named outside the Snakefile works only with the installed .pth file: it is there.
    pth = list((home / "singcontain" / "lib").glob("python3*/site-packages/snakemake_singcontain.pth"))
    assert pth, "the install left out snakemake_singcontain.pth"

    done = run_as_written(f"{wheel}{home}/singcontain/bin/singcontain --version\n", home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((home / "wheels").glob("snakemake_singcontain-*.whl")) and "singcontain 0." in done.stdout
