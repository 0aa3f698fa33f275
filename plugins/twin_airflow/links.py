"""Links a task leaves behind for the Airflow UI: GX Data Docs, the model card / evaluation
report, the Ray Serve endpoint.

A task stores where its page is as an XCom under the link's key (``push_link``): a local file as
its absolute path, anything else as its URL. The plugin in plugins/twin_ops_plugin.py registers
the link classes, and the API server reads the XCom when the UI asks for a task's extra links. A
local file becomes its page on the API server's report app (reports.py), relative to Airflow's
``[api] base_url``: browsers do not open ``file://`` links from an http page. Tasks without that
XCom, or whose file is outside the served folders, show the link disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from twin_ops.config import Paths

DATA_DOCS = "GX Data Docs"
MODEL_REPORT = "Model card / evaluation report"
SERVE_ENDPOINT = "Ray Serve endpoint"


def xcom_key(name: str) -> str:
    return "_link_" + name.lower().replace(" / ", "_").replace(" ", "_")


def stored_location(location: str) -> str:
    """What the XCom holds: a local file's absolute path; a URL unchanged."""
    if "://" in location:
        return location
    return str(Path(location).resolve())


def push_link(context: dict[str, Any], name: str, location: str | None) -> None:
    if location:
        context["ti"].xcom_push(key=xcom_key(name), value=stored_location(location))


def link_url(stored: str, base_url: str, paths: Paths) -> str:
    """The link for a stored location: http(s) URLs as they are; a local file (a path, or a
    ``file://`` URL from runs before the report app) as its page under ``base_url``, or "" (link
    disabled) when no served folder holds it."""
    from urllib.parse import urljoin, urlsplit
    from urllib.request import url2pathname

    from twin_airflow.reports import page_path

    if stored.startswith("file://"):
        stored = url2pathname(urlsplit(stored).path)
    elif "://" in stored:
        return stored
    page = page_path(paths, stored)
    if page is None:
        return ""
    return urljoin(base_url if base_url.endswith("/") else base_url + "/", page)


class _XComLink(BaseOperatorLink):
    """Reads the URL a task pushed; runs in the API server, which has the metadata database."""

    name = ""

    @property
    def xcom_key(self) -> str:
        return xcom_key(self.name)

    def get_link(self, operator, *, ti_key) -> str:
        import json

        from airflow.configuration import conf
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        from twin_airflow.reports import project_paths

        with create_session() as session:
            value = session.scalar(
                select(XComModel.value).where(
                    XComModel.key == self.xcom_key,
                    XComModel.dag_id == ti_key.dag_id,
                    XComModel.run_id == ti_key.run_id,
                    XComModel.task_id == ti_key.task_id,
                    XComModel.map_index == ti_key.map_index,
                )
            )
        if value is None:
            return ""
        try:
            stored = str(json.loads(value))
        except (TypeError, ValueError):
            stored = str(value)
        return link_url(stored, conf.get("api", "base_url", fallback="") or "/", project_paths())


class DataDocsLink(_XComLink):
    name = DATA_DOCS


class ModelReportLink(_XComLink):
    name = MODEL_REPORT


class ServeEndpointLink(_XComLink):
    name = SERVE_ENDPOINT
