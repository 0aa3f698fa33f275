"""TrainingContainerOperator: one training stage in a container, through the Docker provider.

The DockerOperator's image, entrypoint, mounts, environment and GPU device requests are filled in
at run time from params.yaml + the run's overrides (twin_ops.training.container), because the
Params form (author, GPU count, steps...) is only known then. Logs stream into the task log and a
non-zero exit fails the task, as with any DockerOperator; network_mode is always "none".

The Docker provider (docker-py, requests, ...) is imported only when the task runs: the scheduler
parses DAG files every few seconds, and importing it there cost twin_training most of its parse time.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class TrainingContainerOperator(BaseOperator):
    template_fields = ("run_spec",)
    ui_color = "#e0f0ff"

    def __init__(self, *, stage: str, run_spec: Any, image: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.run_spec = run_spec  # an XComArg: the RunSpec JSON once rendered
        self.image = image

    def execute(self, context: Any) -> Any:
        from airflow.providers.docker.operators.docker import DockerOperator

        from twin_airflow.defaults import stage_errors
        from twin_ops.dag_tasks.training import container_kwargs

        with stage_errors():
            arguments = {"image": self.image, **container_kwargs(self.run_spec, self.stage)}
        if arguments.get("network_mode", "none") != "none":
            raise ValueError(f"training containers run without a network (got {arguments['network_mode']!r})")
        arguments["network_mode"] = "none"
        container = DockerOperator(task_id=self.task_id, **arguments)
        self.log.info("training %s in %s: %s %s", self.stage, container.image, container.entrypoint, container.command)
        return container.execute(context)
