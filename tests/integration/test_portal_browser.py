"""The portal in a real browser: Debian's headless Chromium, driven by Selenium through
chromedriver, against the portal served by uvicorn over the small shop's published nights.

A marketer signs in, opens a campaign and its latest list, downloads the CSV, and its rows are
checked against the warehouse; a viewer signs in and finds no download and no contact field.
Every page is saved as a screenshot under ``test-output/portal-browser/`` (or
``$MKT_TEST_OUTPUT/portal-browser/``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
PROJECT = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("MKT_TEST_OUTPUT", PROJECT / "test-output")) / "portal-browser"
USERS = {"mia": ("marketer", "browser-test-marketer"), "vic": ("viewer", "browser-test-viewer")}


def _browser() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Debian's chromium and chromium-driver are not installed (make test installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="module")
def shop(small_shop):
    """The small shop with its last night's report written and two portal users."""
    from jobs.portal import store
    from jobs.reporting.nightly import build_report

    build_report(small_shop.config, small_shop.last)
    engine = store.portal_engine(small_shop.config.portal)
    store.ensure_portal_schema(engine)
    for name, (role, password) in USERS.items():
        store.add_user(engine, name, role, password, datetime.now(UTC))
    return small_shop


@pytest.fixture(scope="module")
def portal_url(shop):
    import uvicorn

    from jobs.portal.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(shop.config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,1100", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.downloads = downloads
    yield session
    session.quit()


def screenshot(browser, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / f"{name}.png"))


def follow(browser, by: str, value: str) -> None:
    """Click what loads a new page, and wait until that page has replaced this one: reading the
    next heading at once could find the old page's, gone a moment later (stale element)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(by, value).click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(old))


def sign_in(browser, portal_url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(portal_url + "/")
    assert "/login" in browser.current_url
    screenshot(browser, f"{name}-0-sign-in")
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(USERS[name][1])
    follow(browser, By.CSS_SELECTOR, "section.login button")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Campaigns"


def busiest_campaign(shop) -> tuple[str, str, int]:
    """(campaign id, name, rows exported) of the last night's largest list."""
    from jobs.activation.campaigns_config import load_campaigns

    config = shop.config
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        campaign_id, exported = conn.execute(
            sa.text(f"select campaign_id, exported from {config.warehouse.schema_name}.mart_campaign_funnel "
                    "where snapshot_date = :d order by exported desc, campaign_id limit 1"),
            {"d": shop.last},
        ).one()  # fmt: skip
    settings = load_campaigns(
        config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
    )
    names = {c.id: c.name for c in settings.campaigns}
    return campaign_id, names[campaign_id], int(exported)


def open_latest_list(browser, shop, who: str) -> tuple[str, int]:
    from selenium.webdriver.common.by import By

    campaign_id, name, exported = busiest_campaign(shop)
    screenshot(browser, f"{who}-1-campaigns")
    follow(browser, By.LINK_TEXT, name)
    assert browser.find_element(By.TAG_NAME, "h1").text == name
    screenshot(browser, f"{who}-2-campaign")
    follow(browser, By.LINK_TEXT, shop.last.isoformat())
    assert browser.find_element(By.ID, "list-rows").text == f"{exported:,}"
    screenshot(browser, f"{who}-3-list")
    return campaign_id, exported


def test_a_marketer_downloads_a_list_whose_rows_are_the_warehouses_targets(shop, portal_url, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, portal_url, "mia")
    campaign_id, exported = open_latest_list(browser, shop, "marketer")
    assert exported > 0
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#preview th")]
    assert "user_id" in headers and ("email" in headers or "phone" in headers)
    browser.find_element(By.CSS_SELECTOR, "a.download[href$='targets.csv']").click()
    target = browser.downloads / f"{campaign_id}_{shop.last.isoformat()}_targets.csv"
    deadline = time.monotonic() + 30
    while not target.exists() or list(browser.downloads.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"no download in {list(browser.downloads.iterdir())}"
        time.sleep(0.2)
    downloaded = pd.read_csv(target)

    config = shop.config
    schema = config.warehouse.schema_name
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        targets = pd.read_sql(
            sa.text(f"select user_id, product_id_1, reason_code from {schema}.mart_campaign_targets "
                    "where snapshot_date = :d and campaign_id = :c and arm = 'target'"),
            conn, params={"d": shop.last, "c": campaign_id},
        )  # fmt: skip
    assert len(downloaded) == exported
    assert downloaded["user_id"].is_unique
    merged = downloaded.merge(targets, on="user_id", how="left", suffixes=("", "_warehouse"), indicator=True)
    assert (merged["_merge"] == "both").all(), "a downloaded customer is not a target in the warehouse"
    assert (merged["reason_code"] == merged["reason_code_warehouse"]).all()
    assert merged["product_id_1"].fillna(-1).astype(int).equals(merged["product_id_1_warehouse"].fillna(-1).astype(int))
    assert (downloaded["campaign_id"] == campaign_id).all()
    assert (downloaded["send_date"] == shop.last.isoformat()).all()

    follow(browser, By.LINK_TEXT, "Reports")
    follow(browser, By.LINK_TEXT, shop.last.isoformat())
    assert "what happened on" in browser.find_element(By.TAG_NAME, "h1").text
    screenshot(browser, "marketer-4-report")


def test_a_viewer_sees_sizes_and_previews_but_no_download_and_no_contact_field(shop, portal_url, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, portal_url, "vic")
    campaign_id, _ = open_latest_list(browser, shop, "viewer")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#preview th")]
    assert "user_id" in headers and "email" not in headers and "phone" not in headers
    assert not browser.find_elements(By.CSS_SELECTOR, "a.download")
    assert "@" not in browser.find_element(By.TAG_NAME, "main").text
    browser.get(f"{portal_url}/campaigns/{campaign_id}/{shop.last.isoformat()}/files/targets.csv")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    screenshot(browser, "viewer-4-download-refused")
