"""The twin-ops Airflow plugin: extra links on every task that records one (see twin_airflow/links.py)."""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from twin_airflow.links import DataDocsLink, ModelReportLink, ServeEndpointLink


class TwinOpsPlugin(AirflowPlugin):
    name = "twin_ops"
    global_operator_extra_links: ClassVar[list] = [DataDocsLink(), ModelReportLink(), ServeEndpointLink()]
