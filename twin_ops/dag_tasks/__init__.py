"""What the Airflow DAG tasks call: one function per task, in the order the DAGs run them.

The DAG files in ``dags/`` only wire tasks together; each task body is one call into this package,
which loads params.yaml (plus the run's overrides), calls the stage's own module and returns a
small JSON-able summary for XCom and the task log. Nothing here imports Airflow, so every step can
also be run and tested without it.

    refresh.py   twin_nightly_refresh: crawl → validate raw → DVC commit → features → validate → asset
    training.py  twin_training: datasets → validate → SFT → DPO → register → evaluate → gate → promote
    deploy.py    twin_deploy: deploy or roll back a registry version on the Ray Serve app
    common.py    params with a run's overrides, DVC commits, failure summaries
"""
