"""Debian packages a service or a test needs (docker.io, debootstrap, chromium), installed with
apt-get when missing: the one place that does it."""

from __future__ import annotations

import os
import shutil
import subprocess


class AptUnavailable(RuntimeError):
    """The packages are missing and this machine cannot install them (no root or no apt-get)."""


def apt_install(*packages: str, log=print) -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise AptUnavailable(f"{', '.join(packages)} missing and cannot be installed here (needs root and apt-get)")
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
