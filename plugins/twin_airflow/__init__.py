"""Airflow-only glue the twin-ops DAGs share: default task arguments, asset names, failure
summaries (defaults.py) and the links a task leaves behind (links.py). Importable from dags/
because Airflow puts its plugins folder on sys.path."""
