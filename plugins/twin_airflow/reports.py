"""The pages a task links to, served over HTTP by the Airflow API server: GX Data Docs, evaluation
reports (report.md as HTML, with comparison.png) and model cards.

A browser refuses to open a ``file://`` link from the UI's http page, so the plugin mounts this
FastAPI app at ``/twin-ops`` on the API server (``fastapi_apps``, twin_ops_plugin.py) and the task
links point here (``page_url``). Airflow mounts a plugin app with no authentication of its own:
every route here depends on ``authorize``, which the plugin sets to Airflow's own user check
(``airflow_readable_dags``: the UI's session cookie or a bearer token, then the auth manager's
permission to read the producing DAG's task instances).

Only three folders are served, each confined to its root (``resolve`` + ``is_relative_to``, so
``..``, encoded or not, and symlinks out of the root are 404), and in the model folder only the
model cards and plots, never weights.

    /twin-ops/                          an index of every report, model card and validation page
    /twin-ops/evaluation/<author>/report.md    rendered to HTML; comparison.png beside it
    /twin-ops/models/<author>/<stage>/README.md    the model card, rendered
    /twin-ops/data-docs/<GX site path>  Data Docs, byte for byte

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations,
which name classes imported inside ``create_app`` (FastAPI and Airflow's API modules load only
when the API server first serves a page, not in every process that loads the plugin).
"""

import html
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from twin_ops.config import Paths

URL_PREFIX = "/twin-ops"
TRAINING_DAG = "twin_training"
REFRESH_DAG = "twin_nightly_refresh"

# Pages render in the Airflow API server's origin, next to the user's session: nothing on them may
# run a script or load anything from elsewhere. Data Docs reference CDN scripts (jQuery, Bootstrap)
# that only decorate the page; their validation pages are plain HTML tables and read the same
# without them, online and offline.
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Folder:
    """One served folder: its URL segment, its root, the files it may serve, the DAGs whose
    readers may see it."""

    name: str
    title: str
    root: Path
    suffixes: frozenset[str] | None  # None: every file under the root
    dags: frozenset[str]

    def allows(self, path: Path) -> bool:
        return self.suffixes is None or path.suffix.lower() in self.suffixes


def folders(paths: Paths) -> list[Folder]:
    return [
        Folder("evaluation", "Evaluation reports", paths.evaluation, frozenset({".md", ".png", ".json"}),
               frozenset({TRAINING_DAG})),
        # Checkpoints and weights live here too (gigabytes): only cards, metrics and plots are pages.
        Folder("models", "Model cards", paths.models, frozenset({".md", ".png"}), frozenset({TRAINING_DAG})),
        Folder("data-docs", "GX Data Docs", paths.data_docs.parent, None, frozenset({TRAINING_DAG, REFRESH_DAG})),
    ]  # fmt: skip


def _inside(root: Path, location: Path) -> Path | None:
    """``location`` resolved, if it is a file under ``root`` (symlinks followed, then checked)."""
    try:
        resolved = location.resolve()
        base = root.resolve()
    except (OSError, RuntimeError):
        return None
    if resolved == base or not resolved.is_relative_to(base) or not resolved.is_file():
        return None
    return resolved


def page_path(paths: Paths, location: str | Path) -> str | None:
    """The page for a local file, relative to the API server's base URL (``twin-ops/...``), or None
    for a file outside the served folders. The GX index needs its CDN scripts to list anything,
    so it maps to this app's own index."""
    location = Path(location)
    if location == paths.data_docs:
        return URL_PREFIX.lstrip("/") + "/"
    for folder in folders(paths):
        resolved = _inside(folder.root, location)
        if resolved is not None and folder.allows(resolved):
            relative = resolved.relative_to(folder.root.resolve()).as_posix()
            return f"{URL_PREFIX.lstrip('/')}/{folder.name}/{quote(relative)}"
    return None


# --- Markdown ---------------------------------------------------------------------------------------


def render_markdown(text: str, title: str) -> str:
    """A Markdown report or model card as a standalone HTML page (markdown-it-py, CommonMark +
    tables). Raw HTML in the source is escaped, not rendered: reports quote model generations and
    crawled text. The one tag the report writes itself, ``<br>`` in table cells, is let through."""
    import frontmatter
    from markdown_it import MarkdownIt

    metadata, body = frontmatter.parse(text)
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    rendered = parser.render(body).replace("&lt;br&gt;", "<br>")
    if metadata:  # a model card's YAML header (Hugging Face metadata): shown as it is
        import yaml

        header = yaml.safe_dump(metadata, sort_keys=False)
        rendered = f"<pre class='metadata'>{html.escape(header)}</pre>\n{rendered}"
    return _page(title, rendered)


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; vertical-align: top; text-align: left; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; }
img { max-width: 100%; }
nav { margin-bottom: 1rem; font-size: 13px; }
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><nav><a href='{URL_PREFIX}/'>twin-ops reports</a></nav>\n"
        f"<main>\n{body}\n</main></body></html>\n"
    )


def _index(paths: Paths, readable: set[str]) -> str:
    """Every page a reader may open, newest first within each folder."""
    sections = []
    for folder in folders(paths):
        if not folder.dags & readable:
            continue
        root = folder.root.resolve()
        if folder.name == "data-docs":
            found = list(root.glob("validations/**/*.html"))
        elif folder.name == "models":
            found = [p for p in root.glob("*/*/README.md") if p.is_file()]
        else:
            found = list(root.glob("*/report.md"))
        found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        items = "".join(
            f"<li><a href='{URL_PREFIX}/{folder.name}/{quote(p.relative_to(root).as_posix())}'>"
            f"{html.escape(p.relative_to(root).as_posix())}</a></li>"
            for p in found
        )
        sections.append(f"<h2>{html.escape(folder.title)}</h2>\n<ul>{items or '<li>none yet</li>'}</ul>")
    return _page("twin-ops reports", "<h1>twin-ops reports</h1>\n" + "\n".join(sections))


# --- the app -------------------------------------------------------------------------------------------


def create_app(paths: Callable[[], Paths], authorize: Callable[..., Any]) -> Any:
    """The report app. ``paths`` gives the project's folders (read per request, so the app can be
    built before the project is). ``authorize`` is a FastAPI dependency that refuses a request
    without a user (401/403) and otherwise returns the DAG ids whose task instances the user may
    read; a folder is served to readers of one of its DAGs."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response

    app = FastAPI(title="twin-ops reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index(readable: Annotated[set[str], Depends(authorize)]) -> HTMLResponse:
        return HTMLResponse(_index(paths(), readable), headers=SECURITY_HEADERS)

    @app.get("/{name}/{path:path}")
    def page(name: str, path: str, readable: Annotated[set[str], Depends(authorize)]) -> Response:
        folder = next((f for f in folders(paths()) if f.name == name), None)
        if folder is None:
            raise HTTPException(404, "no such folder")
        if not folder.dags & readable:
            raise HTTPException(403, f"reading {folder.title} needs read access to {sorted(folder.dags)}")
        if "\x00" in path:
            raise HTTPException(400, "bad path")
        resolved = _inside(folder.root, folder.root / path)
        if resolved is None or not folder.allows(resolved):
            raise HTTPException(404, "not found")
        if resolved.suffix.lower() == ".md":
            title = f"{folder.title}: {resolved.relative_to(folder.root.resolve()).as_posix()}"
            return HTMLResponse(render_markdown(resolved.read_text(errors="replace"), title), headers=SECURITY_HEADERS)
        media_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        return FileResponse(resolved, media_type=media_type, headers=SECURITY_HEADERS)

    return app


# --- Airflow's side -----------------------------------------------------------------------------------


def airflow_readable_dags():
    """The dependency the plugin mounts the app with: Airflow's own ``get_user`` (the UI's
    ``_token`` session cookie, or an ``Authorization: Bearer`` JWT from ``POST /auth/token``; none
    → 401, invalid → 403), then the auth manager's verdict on reading each twin-ops DAG's task
    instances. Built lazily: importing Airflow's API modules needs its configuration."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user
    from airflow.models.dag import DagModel
    from fastapi import Depends

    def readable_dags(user: Annotated[Any, Depends(get_user)]) -> set[str]:  # a BaseUser
        manager = get_auth_manager()
        return {
            dag_id
            for dag_id in (TRAINING_DAG, REFRESH_DAG)
            if manager.is_authorized_dag(
                method="GET",
                access_entity=DagAccessEntity.TASK_INSTANCE,
                details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
                user=user,
            )
        }

    return readable_dags


def project_paths() -> Paths:
    from twin_ops.config import load_params, resolve_paths

    return resolve_paths(load_params())


class LazyApp:
    """An ASGI app that builds the report app on its first request. Every Airflow process loads
    the plugin (scheduler, DAG processor, workers); only the API server serves pages, and Airflow's
    API security module alone takes seconds to import."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app(project_paths, airflow_readable_dags())
        await self._app(scope, receive, send)
