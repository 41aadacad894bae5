"""Labels of mapped HitPaw tasks (``map_index_template``), short enough for every Airflow database.

Airflow keeps a mapped task's rendered ``map_index_template`` in ``task_instance.rendered_map_index``,
a ``VARCHAR(250)``. SQLite stores a longer value; PostgreSQL and MySQL refuse it, and Airflow sends
the label with the task's final state, so a label rendered from a long photo URL (a presigned URL
easily passes 250 characters) fails the task *after* HitPaw was paid and the job completed. A photo
URL also makes a poor label: its query string (the signature) would show in the UI.

:func:`photo_label` is a short, signature-free label (``task.photo_label`` in a template), and
:func:`check_map_index` fails the task before any request when a template renders too long.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_hitpaw.errors import MapIndexTooLongError

#: The length of Airflow's ``task_instance.rendered_map_index`` column (Airflow 3.1 to 3.3).
RENDERED_MAP_INDEX_LIMIT = 250
#: The longest :func:`photo_label`, well under the column's length.
PHOTO_LABEL_LIMIT = 80
#: Characters a shortened label keeps from the end of a name (its extension, a counter).
_LABEL_TAIL = 16
_FALLBACK_LABEL = "photo"
_WHITESPACE = re.compile(r"\s+")


def shorten(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long: the middle gives way to ``…``, the end is kept."""
    if len(text) <= limit:
        return text
    tail = min(_LABEL_TAIL, max(limit // 4, 0))
    head = limit - 1 - tail
    return f"{text[:head]}…{text[len(text) - tail:] if tail else ''}"


def photo_label(img_url: object, limit: int = PHOTO_LABEL_LIMIT) -> str:
    """A short label for a photo URL: its file name, percent-decoded, without the query string.

    ``https://bucket.s3.amazonaws.com/shoots/Ann%20B.jpg?X-Amz-Signature=...`` gives ``Ann B.jpg``; a
    URL without a file name gives its host. Never empty, never longer than ``limit`` characters (a long
    name keeps its start and its last characters, the extension among them).
    """
    if not isinstance(img_url, str) or not img_url.strip():
        return _FALLBACK_LABEL
    try:
        parts = urlsplit(img_url.strip())
        name = unquote(parts.path.rstrip("/").rpartition("/")[2], errors="replace") or (parts.hostname or "")
    except ValueError:  # e.g. an unbalanced IPv6 bracket: no label from it
        name = ""
    name = "".join(ch if ch.isprintable() else " " for ch in name)
    name = _WHITESPACE.sub(" ", name).strip()
    return shorten(name or _FALLBACK_LABEL, max(limit, 1))


def check_map_index(task: Any, context: Any) -> None:
    """Fail before any request if the task's ``map_index_template`` renders a label Airflow cannot store.

    Renders the template the way Airflow's task runner does (the DAG's Jinja environment, the task's
    context). A template that cannot be rendered yet is left to Airflow, which renders it again after
    ``execute``. When the label is too long, the template in ``context`` is bounded first so that the
    failure itself (which carries the label) can be recorded, then :class:`MapIndexTooLongError` is
    raised.
    """
    template = context.get("map_index_template") if hasattr(context, "get") else None
    if not template or not isinstance(template, str):
        return
    try:
        rendered = _template_env(task).from_string(template).render(context)
    except Exception:  # Airflow renders it again after execute and reports its own error
        return
    if len(rendered) <= RENDERED_MAP_INDEX_LIMIT:
        return
    context["map_index_template"] = bounded_template(template)
    raise MapIndexTooLongError(
        f"map_index_template renders a label of {len(rendered)} characters, more than the "
        f"{RENDERED_MAP_INDEX_LIMIT} Airflow's database stores (task_instance.rendered_map_index): "
        "PostgreSQL and MySQL refuse it when the task ends, which would fail the task after HitPaw was "
        "paid. Nothing was submitted. Use a shorter label, such as map_index_template="
        "'{{ task.photo_label }}' (the photo's file name, without the URL's query string)."
    )


def bounded_template(template: str, limit: int = RENDERED_MAP_INDEX_LIMIT) -> str:
    """``template`` wrapped so that its rendering is cut to ``limit`` characters (``...`` at the end)."""
    return f"{{% filter truncate({limit}, true, '...', 0) %}}{template}{{% endfilter %}}"


def _template_env(task: Any) -> Any:
    try:
        dag = task.dag
    except (AttributeError, RuntimeError):  # an operator outside a DAG (a unit test)
        dag = None
    if dag is not None:
        return dag.get_template_env()
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(cache_size=0)
