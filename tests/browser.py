"""Headless Debian chromium through Playwright for the browser tests (never `playwright install`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # screenshots, gitignored


def need_browser() -> None:
    """Skip when playwright or chromium is missing, except in CI, where scripts/test.sh installs both."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed; scripts/test.sh installs it")
        pytest.skip("playwright not installed")
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing; scripts/test.sh installs it")
        pytest.skip("chromium not installed")


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
