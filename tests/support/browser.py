"""A headless browser for the tests: Debian's chromium driven by selenium, installed when missing
(as `twin-ops services up --docker` installs docker.io), never downloaded by Selenium Manager."""

from __future__ import annotations

import os
import shutil

PACKAGES = ("chromium", "chromium-driver")


def ensure_chromium() -> tuple[str, str]:
    """(the browser, its driver): Debian's, installed with apt-get when missing."""
    from twin_ops.services.apt import apt_install

    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        apt_install(*PACKAGES)
    return shutil.which("chromium"), shutil.which("chromedriver")


def headless_chromium(width: int = 1100, height: int = 1400):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = ensure_chromium()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root (containers)
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
