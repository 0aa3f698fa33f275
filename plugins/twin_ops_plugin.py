"""The twin-ops Airflow plugin: extra links on every task that records one (twin_airflow/links.py),
and the pages they open, served by the API server behind Airflow's login (twin_airflow/reports.py)."""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from twin_airflow.links import DataDocsLink, ModelReportLink, ServeEndpointLink
from twin_airflow.reports import URL_PREFIX, LazyApp


class TwinOpsPlugin(AirflowPlugin):
    name = "twin_ops"
    global_operator_extra_links: ClassVar[list] = [DataDocsLink(), ModelReportLink(), ServeEndpointLink()]
    fastapi_apps: ClassVar[list] = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "twin-ops reports"}]
