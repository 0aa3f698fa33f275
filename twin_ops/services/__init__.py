"""The real services twin-ops runs on: Weaviate, a Docker engine for job containers, Airflow's home."""
