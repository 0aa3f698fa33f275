"""twin_nightly_refresh: bring every author's data, features and index up to date, nightly.

Per author (dynamic task mapping over params.yaml's project.authors, or the run's `authors`):
crawl → validate raw (GX; publishes data/raw only if it passes) → DVC commit → features (clean,
chunk, embed, incremental index) → validate features → DVC commit → publish the author's feature
asset, which schedules twin_training. A failed check stops that author's branch: nothing
downstream changes and no asset event is sent. Task bodies are one call into twin_ops.dag_tasks.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias, Param, dag, task, task_group
from twin_airflow.defaults import (
    START_DATE,
    default_args,
    feature_asset_name,
    feature_asset_uri,
    params,
    run_stage,
    timeout,
)
from twin_airflow.links import DATA_DOCS, push_link

FEATURES_ALIAS = AssetAlias("twin_features")


@dag(
    dag_id="twin_nightly_refresh",
    schedule=params().airflow.nightly_schedule,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "authors": Param(
            list(params().project.authors),
            type="array",
            items={"type": "string"},
            title="Authors",
            description="Author ids to refresh (include/authors/<id>.yaml).",
        ),
    },
    tags=["twin-ops", "data"],
    doc_md=__doc__,
)
def twin_nightly_refresh():
    @task
    def list_authors(**context) -> list[str]:
        from twin_ops.dag_tasks import refresh

        return run_stage(refresh.authors, context["params"]["authors"])

    @task_group
    def refresh_author(author: str):
        @task(execution_timeout=timeout("crawl"))
        def crawl(author: str) -> dict:
            from twin_ops.dag_tasks import refresh

            return run_stage(refresh.crawl, author)

        @task(retries=0)
        def validate_raw(author: str, **context) -> dict:
            from twin_ops.dag_tasks import refresh

            result = run_stage(refresh.validate_raw, author)
            push_link(context, DATA_DOCS, result["data_docs"])
            return result

        @task
        def commit_raw(author: str) -> dict:
            from twin_ops.dag_tasks import refresh

            return run_stage(refresh.commit_raw, author)

        @task(execution_timeout=timeout("features"))
        def features(author: str) -> dict:
            from twin_ops.dag_tasks import refresh

            return run_stage(refresh.features, author)

        @task(retries=0)
        def validate_features(author: str, **context) -> dict:
            from twin_ops.dag_tasks import refresh

            result = run_stage(refresh.validate_features, author)
            push_link(context, DATA_DOCS, result["data_docs"])
            return result

        @task
        def commit_features(author: str) -> dict:
            from twin_ops.dag_tasks import refresh

            return run_stage(refresh.commit_features, author)

        @task(outlets=[FEATURES_ALIAS])
        def publish(author: str, summary: dict, commit: dict, **context) -> dict:
            """The author's feature asset: twin_training is scheduled on it."""
            extra = {
                "author": author,
                "documents": summary["documents"],
                "chunks": summary["chunks"],
                "data_version": commit["outs"],
            }
            context["outlet_events"][FEATURES_ALIAS].add(
                Asset(name=feature_asset_name(author), uri=feature_asset_uri(author)), extra=extra
            )
            return extra

        summary = features(author)
        checked = validate_features(author)
        committed = commit_features(author)
        crawl(author) >> validate_raw(author) >> commit_raw(author) >> summary >> checked >> committed
        publish(author, summary, committed)

    refresh_author.expand(author=list_authors())


twin_nightly_refresh()
