"""Links a task leaves behind for the Airflow UI: GX Data Docs, the model card / evaluation
report, the Ray Serve endpoint.

A task stores the URL as an XCom under the link's key (``push_link``); the plugin in
plugins/twin_ops_plugin.py registers the link classes, and the API server reads the XCom when
the UI asks for a task's extra links. Tasks without that XCom show the link disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperatorLink

DATA_DOCS = "GX Data Docs"
MODEL_REPORT = "Model card / evaluation report"
SERVE_ENDPOINT = "Ray Serve endpoint"


def xcom_key(name: str) -> str:
    return "_link_" + name.lower().replace(" / ", "_").replace(" ", "_")


def as_url(location: str) -> str:
    """Local files (Data Docs, reports) as file:// URLs; http(s) URLs unchanged."""
    if "://" in location:
        return location
    return Path(location).resolve().as_uri()


def push_link(context: dict[str, Any], name: str, location: str | None) -> None:
    if location:
        context["ti"].xcom_push(key=xcom_key(name), value=as_url(location))


class _XComLink(BaseOperatorLink):
    """Reads the URL a task pushed; runs in the API server, which has the metadata database."""

    name = ""

    @property
    def xcom_key(self) -> str:
        return xcom_key(self.name)

    def get_link(self, operator, *, ti_key) -> str:
        import json

        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

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
            return str(json.loads(value))
        except (TypeError, ValueError):
            return str(value)


class DataDocsLink(_XComLink):
    name = DATA_DOCS


class ModelReportLink(_XComLink):
    name = MODEL_REPORT


class ServeEndpointLink(_XComLink):
    name = SERVE_ENDPOINT
