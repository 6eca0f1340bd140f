"""The page at ``/`` in headless Chromium: type a user id, see the list with "because you watched ...".

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package;
skipped with a message where they are absent. Chromium is started with no
network use of its own (no sync, component updates or background fetches).
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from rekko.recommend import Recommender, load_artifacts  # noqa: E402
from rekko.serve.app import create_app  # noqa: E402
from tests.serve_support import build_artifacts, live_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("serve-browser"))


@pytest.fixture(scope="module")
def url(paths):
    with live_server(create_app(paths, reload_interval=None)) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-default-apps", "--disable-extensions", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _ask(browser, url: str, user: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/")
    box = browser.find_element(By.ID, "user")
    box.clear()
    box.send_keys(user)
    browser.find_element(By.ID, "go").click()
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: d.find_element(By.ID, "status").text not in ("", "Loading…"))
    return wait, By, ec


def test_a_user_sees_their_list_with_because_you_watched(browser, url, paths):
    rec = Recommender(load_artifacts(paths))
    expected = rec.recommend(1, 10).items
    _, by, _ = _ask(browser, url, "1")
    items = browser.find_elements(by.CSS_SELECTOR, "#results li.rec")
    assert [li.find_element(by.CLASS_NAME, "title").text for li in items] == expected["title"].tolist()
    because = [li.find_element(by.CLASS_NAME, "because").text for li in items
               if li.find_elements(by.CLASS_NAME, "because")]
    expected_because = [f"because you watched {t}" for t in expected["based_on_title"] if isinstance(t, str)]
    assert because == expected_because and because, "no 'because you watched' line shown"
    assert "Top 10 for user 1" in browser.find_element(by.ID, "status").text
    assert browser.current_url.endswith("?user=1&n=10")  # the answer is linkable


def test_an_unknown_user_sees_a_labelled_cold_start_list(browser, url):
    _, by, _ = _ask(browser, url, "987654321")
    status = browser.find_element(by.ID, "status")
    assert "cold start" in status.text and status.get_attribute("class") == "cold"
    items = browser.find_elements(by.CSS_SELECTOR, "#results li.rec")
    assert len(items) == 10
    assert not browser.find_elements(by.CSS_SELECTOR, "#results .because")


def test_an_error_from_the_api_is_shown(browser, url):
    browser.get(f"{url}/?user=99999999999999999999999")  # beyond int64: the API answers 422
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda d: d.find_element(By.ID, "status").text.startswith("Error"))
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("class") == "error" and "less than or equal" in status.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results li")
