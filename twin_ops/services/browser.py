"""A headless browser for the tests that drive a real page: Debian's chromium and chromium-driver,
installed with apt-get when missing (as docker_engine installs docker.io). selenium drives them;
nothing is downloaded at run time (selenium's own driver manager is not used: the machines are
offline)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

PACKAGES = ("chromium", "chromium-driver")


@dataclass(frozen=True)
class Chromium:
    binary: str
    driver: str


def ensure_chromium(*, log=print) -> Chromium:
    """Debian's chromium and chromedriver, installed first (services/apt.py) if either is missing."""
    from twin_ops.services.apt import apt_install

    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        apt_install(*PACKAGES, log=log)
    return Chromium(binary=shutil.which("chromium") or "", driver=shutil.which("chromedriver") or "")


def headless_driver(chromium: Chromium, *, width: int = 1280, height: int = 900):
    """A selenium Chrome driver on Debian's chromium, headless, with no network beyond what the
    page asks of local servers."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
