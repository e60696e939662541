"""The committed bundle is what the committed sources build: a fresh ``npm ci`` of the
lockfile, the type check and ``build.mjs`` into a temporary folder give the same bytes as
``sgflow/service/playground/static`` (so nobody commits a stale or hand-edited bundle).
Skipped only where npm is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sgflow.service.playground import STATIC_DIR

SOURCES = Path(__file__).resolve().parents[2] / "playground"
TRACKED = ["package.json", "package-lock.json", ".npmrc", "tsconfig.json", "build.mjs", "src"]


def _npm(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_the_committed_bundle_is_built_from_the_committed_sources(tmp_path: Path) -> None:
    work = tmp_path / "playground"
    work.mkdir()
    for name in TRACKED:
        source = SOURCES / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy2(source, work / name)
    _npm(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], work)
    _npm(["npx", "--no-install", "tsc", "--noEmit", "-p", "."], work)
    out = tmp_path / "static"
    _npm(["node", "build.mjs", str(out)], work)
    built = sorted(p.name for p in out.iterdir())
    assert (
        built == sorted(p.name for p in STATIC_DIR.iterdir()) == ["app.css", "app.js", "index.html"]
    )
    for name in built:
        assert (out / name).read_bytes() == (STATIC_DIR / name).read_bytes(), (
            f"{name} differs from the committed bundle: run `make playground` and commit "
            "sgflow/service/playground/static"
        )
