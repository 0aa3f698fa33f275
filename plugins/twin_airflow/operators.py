"""TrainingContainerOperator: one training stage in a container, through the Docker provider.

A DockerOperator whose image, entrypoint, mounts, environment and GPU device requests are filled
in at run time from params.yaml + the run's overrides (twin_ops.training.container), because the
Params form (author, GPU count, steps...) is only known then. Logs stream into the task log and a
non-zero exit fails the task, as with any DockerOperator; network_mode is always "none".
"""

from __future__ import annotations

from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator


class TrainingContainerOperator(DockerOperator):
    template_fields = (*DockerOperator.template_fields, "run_spec")

    def __init__(self, *, stage: str, run_spec: Any, image: str, **kwargs: Any) -> None:
        super().__init__(image=image, network_mode="none", **kwargs)
        self.stage = stage
        self.run_spec = run_spec  # an XComArg: the RunSpec dict once rendered

    def execute(self, context: Any) -> Any:
        from twin_ops.dag_tasks.training import container_kwargs

        for name, value in container_kwargs(self.run_spec, self.stage).items():
            setattr(self, name, value)
        if self.network_mode != "none":
            raise ValueError(f"training containers run without a network (got network_mode={self.network_mode!r})")
        self.log.info("training %s in %s: %s %s", self.stage, self.image, self.entrypoint, self.command)
        return super().execute(context)
