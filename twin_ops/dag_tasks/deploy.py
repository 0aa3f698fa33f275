"""twin_deploy: serve a chosen registry version, or roll back to the previous one, by hand."""

from __future__ import annotations

import logging

from twin_ops.dag_tasks.common import StageFailed, load
from twin_ops.dag_tasks.records import Promoted

ACTIONS = ("deploy", "rollback")
log = logging.getLogger(__name__)


def deploy(author_id: str, action: str, version: int | None) -> Promoted:
    """Move production (deploy: to ``version``, else the candidate; rollback: to ``previous``) and
    make the running Ray Serve app serve it; if serving fails, the registry is restored."""
    from twin_ops.evaluation.candidate import model_name
    from twin_ops.evaluation.promote import promote_and_serve, rollback_and_serve
    from twin_ops.registry.store import CANDIDATE
    from twin_ops.serving.ops import serve_url

    if action not in ACTIONS:
        raise StageFailed(f"action must be one of {', '.join(ACTIONS)} (got {action!r})")
    params, paths, settings = load()
    name = model_name(params, author_id)
    url = serve_url(params)  # the app serves every author's twin: this one swaps, the others keep serving
    serving = {"serve": True, "url": url, "api_key": settings.twin_ops_api_key}
    # RegistryError (nothing to roll back to, unknown version); PromotionFailed (registry restored)
    if action == "rollback":
        result = rollback_and_serve(name, params, paths, reason="rollback by twin_deploy", **serving)
    else:
        ref = version if version is not None else CANDIDATE
        result = promote_and_serve(name, params, paths, version=ref, reason="deploy by twin_deploy", **serving)
    log.info(result.line())
    return Promoted(
        model_name=name,
        version=result.promoted.version,
        replaced=result.replaced,
        endpoint=url,
        model_version=result.swap.model_version if result.swap else None,
    )
