"""A real web server (Uvicorn, the ASGI app) and headless Debian Chromium driven by Playwright.

The browser is the system's /usr/bin/chromium (`apt-get install chromium`); Playwright's
own browser download is not used. Without it, the browser tests are skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def web_server(start_web_server):
    return start_web_server()


@pytest.fixture
def chromium(monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    # Playwright's sync API runs an event loop on this thread; the test's own ORM calls
    # (set-up and assertions, between browser steps) are still plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
        # ORM calls made while Playwright's loop runs get their own connections (Django keys
        # them by async context); close them here, or the test database cannot be dropped.
        connections.close_all()


def sign_in(page, base_url: str, username: str, password: str = "pw-for-tests-123") -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
