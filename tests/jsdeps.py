"""The Node packages the tests use (tests/js: TypeScript, React 19, esbuild), from their lock file."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"


def node_modules():
    """tests/js/node_modules, installed with `npm ci` when missing or older than the lock file.

    Without npm the test is skipped, or fails with CHATRELAY_REQUIRE_BROWSER=1 (as in CI).
    """
    marker = JS / "node_modules" / ".package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= (JS / "package-lock.json").stat().st_mtime:
        return JS / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CHATRELAY_REQUIRE_BROWSER") == "1":
            pytest.fail("CHATRELAY_REQUIRE_BROWSER=1 but npm is not installed")
        pytest.skip("npm is not installed")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True, timeout=600)
    return JS / "node_modules"
