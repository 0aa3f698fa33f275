"""twin_deploy: serve a chosen registry version, or roll back to the previous one, by hand."""

from __future__ import annotations

from typing import Any

from twin_ops.dag_tasks.common import StageFailed, load

ACTIONS = ("deploy", "rollback")


def deploy(author_id: str, action: str, version: int | None) -> dict[str, Any]:
    """Move production (deploy: to ``version``, else the candidate; rollback: to ``previous``) and
    make the running Ray Serve app serve it; if serving fails, the registry is restored."""
    from twin_ops.config import Settings
    from twin_ops.evaluation.candidate import model_name
    from twin_ops.evaluation.promote import PromotionFailed, promote_and_serve
    from twin_ops.registry.store import CANDIDATE, PREVIOUS, Registry, RegistryError
    from twin_ops.serving.ops import serve_url

    if action not in ACTIONS:
        raise StageFailed(f"action must be one of {', '.join(ACTIONS)} (got {action!r})")
    params, paths, _ = load()
    name = model_name(params, author_id)
    registry = Registry(paths.models)
    try:
        if action == "rollback":
            target = registry.alias(name, PREVIOUS)
            if target is None:
                raise StageFailed(f"{name} has no previous version to roll back to")
            ref: int | str = target.version
        else:
            ref = version if version is not None else CANDIDATE
        served = name == params.serving.model_name  # the app serves one twin; others move in the registry only
        url = serve_url(params)
        reason = f"{action} by twin_deploy"
        result = promote_and_serve(
            name,
            params,
            paths,
            version=ref,
            serve=served,
            url=url if served else None,
            api_key=Settings().twin_ops_api_key,
            reason=reason,
        )
    except (RegistryError, PromotionFailed) as exc:
        raise StageFailed(str(exc)) from exc
    print(result.line(), flush=True)
    return {
        "model_name": name,
        "version": result.promoted.version,
        "replaced": result.replaced,
        "endpoint": url if served else None,
        "model_version": result.swap.model_version if result.swap else None,
    }
