"""A real dockerd (started by `twin-ops services up --docker`) runs a job container offline."""

from __future__ import annotations

from contextlib import closing

import pytest

from twin_ops.services import docker_engine


@pytest.fixture(scope="module")
def engine(params, paths, settings):
    docker_engine.start_engine(params, paths, settings)  # no-op when already up
    with closing(docker_engine.client(settings)) as connected:
        yield connected


def test_container_runs_without_network_and_reports_exit_code(engine, params):
    container = engine.containers.run(
        params.docker.base_image,
        ["sh", "-c", "echo twin-ops job; cat /etc/debian_version; ls /sys/class/net; exit 3"],
        network_mode="none",
        detach=True,
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 3
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    lines = output.splitlines()
    assert lines[0] == "twin-ops job"
    assert lines[1].split(".")[0] == "12"  # bookworm
    assert lines[2:] == ["lo"]  # network_mode="none": loopback only


def test_status_reports_the_managed_engine(params, settings):
    info = docker_engine.engine_info(params, settings)
    assert info.server_version is not None
    assert info.base_image_present
