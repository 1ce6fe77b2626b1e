"""The bootstrap as a person does it (issue 17, item 5): Debian's Chromium, headless, driven
through the simulator's consent page to rosesync's callback page, whose text is read for each
outcome: approve, deny, a wrong client secret, a forged state.

Selenium talks to the system chromedriver (`chromium-driver`): nothing is downloaded from
outside the package registries. Skipped with the reason when no browser is installed, failing
under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from config.settings import load_settings
from tests.support import free_port, world_env
from worker.credentials.bootstrap import bootstrap
from worker.credentials.store import credential_statuses
from worker.errors import RoseSyncError
from worker.simulator import Simulator, SimulatorConfig
from worker.warehouse import connect

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that work as root in a container: no sandbox, no GPU, nothing phoning home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # Selenium logs every WebDriver exchange at DEBUG, page URLs (codes in them) included: the
    # test process's own secret check would rightly object.
    quiet = logging.getLogger("selenium")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        quiet.setLevel(level)


class Bootstrap:
    """`rosesync bootstrap` running on a thread; ``url`` is what it printed."""

    def __init__(self, run: Callable[[Callable[[str], None]], object]) -> None:
        self.printed = threading.Event()
        self.url = ""
        self.error: BaseException | None = None

        def announce(url: str) -> None:
            self.url = url
            self.printed.set()

        def target() -> None:
            try:
                run(announce)
            except BaseException as exc:  # reported by finish()
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        assert self.printed.wait(60), "the bootstrap printed no URL"

    def finish(self) -> BaseException | None:
        self.thread.join(90)
        assert not self.thread.is_alive()
        return self.error


@pytest.fixture
def start(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Bootstrap, Any]]]:
    sims: list[Simulator] = []

    def begin(**env: str) -> tuple[Bootstrap, Any]:
        config = replace(
            SimulatorConfig(records=5),
            consent="page",
            redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
        )
        sim = Simulator(config).start()
        sims.append(sim)
        environ = world_env(sim, sqlite_url, tmp_path, **env)
        settings = load_settings(environ=environ, dotenv_path=None)
        engine = connect(settings.database_url)
        running = Bootstrap(
            lambda announce: bootstrap(settings, engine, announce=announce, timeout=60)
        )
        return running, (settings, engine)

    yield begin
    for sim in sims:
        sim.stop()


def _consent(browser: Any, url: str, decision: str) -> str:
    """Open the authorization URL, press the decision's button on the consent page, and read
    the page the browser lands on (rosesync's callback page, once it has answered)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    assert "Approve" in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.CSS_SELECTOR, f"button[value='{decision}']").click()

    def landed(driver: Any) -> str | None:
        if urlsplit(driver.current_url).path != "/callback":
            return None
        text: str = driver.find_element(By.TAG_NAME, "body").text
        return text or None

    waiting = WebDriverWait(
        browser, 60, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
    )
    page: str = waiting.until(landed)
    return page


def test_approve(browser: Any, start: Callable[..., tuple[Bootstrap, Any]]) -> None:
    running, (settings, engine) = start()
    page = _consent(browser, running.url, "approve")
    print(f"approve -> {page!r}")
    assert page == "Done\nrosesync stored the credential.\nYou can close this tab."
    assert running.finish() is None
    assert [s.state for s in credential_statuses(settings, engine)] == ["ok"]


def test_deny(browser: Any, start: Callable[..., tuple[Bootstrap, Any]]) -> None:
    running, _ = start()
    page = _consent(browser, running.url, "deny")
    print(f"deny -> {page!r}")
    assert page.startswith("Sign-in failed\nthe authorization failed: access_denied")
    assert page.endswith(
        "run `rosesync bootstrap` again and approve the access\nYou can close this tab."
    )
    error = running.finish()
    assert isinstance(error, RoseSyncError) and "access_denied" in str(error)


def test_a_wrong_client_secret(browser: Any, start: Callable[..., tuple[Bootstrap, Any]]) -> None:
    """Issue 17, finding 6: the page said "Done" while the terminal reported invalid_client."""
    running, (settings, engine) = start(ROSEROCKET_CLIENT_SECRET="not-the-registered-secret")
    page = _consent(browser, running.url, "approve")
    print(f"wrong client secret -> {page!r}")
    assert page.startswith("Sign-in failed\nthe code exchange failed: invalid_client")
    assert "check ROSEROCKET_CLIENT_ID and ROSEROCKET_CLIENT_SECRET" in page
    assert "stored the credential" not in page
    error = running.finish()
    assert isinstance(error, RoseSyncError) and "invalid_client" in str(error)
    assert credential_statuses(settings, engine) == []


def test_a_forged_state(browser: Any, start: Callable[..., tuple[Bootstrap, Any]]) -> None:
    from selenium.webdriver.common.by import By

    running, (settings, _engine) = start()
    browser.get(f"{settings.redirect_uri}?code=forged-code&state=forged-state")
    page = browser.find_element(By.TAG_NAME, "body").text
    print(f"forged state -> {page!r}")
    assert page.startswith("Not the expected sign-in\nThis response does not belong")
    assert "rosesync is still waiting" in page
    # ...and it is: the real sign-in still works
    assert _consent(browser, running.url, "approve").startswith("Done")
    assert running.finish() is None
