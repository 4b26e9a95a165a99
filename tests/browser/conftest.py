"""Browser tests: Debian's chromium driven by Playwright, against the app served as in production
(WhiteNoise serves the hashed static files), with a real Celery worker where runs must execute.

One browser for the whole session; each test gets a fresh context that refuses every request not
addressed to the live server (nothing may come from a CDN) and fails on console errors and failed
requests. Screenshots of the pages visited go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test.testcases import LiveServerThread
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

# Playwright's sync API keeps an event loop in the test thread; the tests' own database calls are
# ordinary synchronous calls, so Django's async-safety guard is told so.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
LAUNCH_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), (
        "Debian's chromium is missing: make test installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def live_app(transactional_db: None) -> Iterator[str]:
    """The WSGI app on a free port in a thread, static files served by WhiteNoise (no Django helper)."""
    server = LiveServerThread("127.0.0.1", static_handler=lambda handler: handler)  # type: ignore[arg-type]
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()


class Watched:
    """A page whose stray requests, failed requests and console errors are collected."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        self.expected: list[str] = []  # console errors a test causes on purpose (a 404 page)
        self.allowed: list[str] = []  # other origins a test reaches on purpose (the local Stripe Checkout)
        page.on("console", self._console)
        page.on("requestfailed", self._failed)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        # Which request failed (the console only says "Failed to load resource").
        if response.status >= 400 and not any(str(response.status) in text for text in self.expected):
            self.problems.append(f"http {response.status}: {response.request.method} {response.url}")

    def _failed(self, request: Any) -> None:
        # ERR_ABORTED is the browser cancelling a request because the page navigated away, not a failure.
        if "ERR_ABORTED" not in str(request.failure):
            self.problems.append(f"failed: {request.url} {request.failure}")

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(text in message.text for text in self.expected):
            self.problems.append(f"console: {message.text}")

    def unlabelled(self) -> list[str]:
        """Form controls a screen reader could not name (no label, aria-label or aria-labelledby)."""
        return self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden' && !(el.labels && el.labels.length)
                    && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
                .map(el => el.outerHTML.slice(0, 120))"""
        )

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.page.set_viewport_size(size)
            self.page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)


@pytest.fixture
def watched(browser: Browser, live_app: str) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP, base_url=live_app)
    stray: list[str] = []

    def only_the_live_server(route: Any) -> None:
        if route.request.url.startswith((live_app, *result.allowed)):
            route.continue_()
        else:
            stray.append(route.request.url)
            route.abort()

    page = context.new_page()
    page.set_default_timeout(15_000)
    result = Watched(page, live_app)
    context.route("**/*", only_the_live_server)
    yield result
    context.close()
    assert stray == [], f"requests outside the live server: {stray}"
    assert result.problems == [], result.problems


def sign_out(watched: Watched) -> None:
    watched.page.get_by_role("button", name="Sign out").click()
    watched.page.wait_for_url(re.compile(r"/accounts/login/|/$"))
    watched.page.context.clear_cookies()


def sign_in(
    watched: Watched, email: str, password: str = "correct horse battery staple", *, shot: bool = False
) -> None:
    page = watched.page
    page.goto("/accounts/login/")
    if shot:
        watched.shot("sign-in")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
