"""A headless browser for the tests that drive a real page: Debian's chromium and chromium-driver,
installed with apt-get when missing (as docker_engine installs docker.io). selenium drives them;
nothing is downloaded at run time (selenium's own driver manager is not used: the machines are
offline)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

PACKAGES = ("chromium", "chromium-driver")


class BrowserUnavailable(RuntimeError):
    """chromium or its driver is missing and cannot be installed here; the message says why."""


@dataclass(frozen=True)
class Chromium:
    binary: str
    driver: str


def ensure_chromium(*, log=print) -> Chromium:
    """Debian's chromium and chromedriver, installed first if either is missing."""
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise BrowserUnavailable(
                f"{', '.join(PACKAGES)} missing and cannot be installed here (needs root and apt-get)"
            )
        log(f"browser: installing {' '.join(PACKAGES)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env)
    return Chromium(binary=shutil.which("chromium") or "", driver=shutil.which("chromedriver") or "")


def headless_driver(chromium: Chromium, *, width: int = 1280, height: int = 900):
    """A selenium Chrome driver on Debian's chromium, headless, with no network beyond what the
    page asks of local servers."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
