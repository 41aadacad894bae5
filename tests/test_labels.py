"""Labels of mapped HitPaw tasks: ``task.photo_label`` and the check of ``map_index_template``."""

from __future__ import annotations

import pytest
from jinja2.sandbox import SandboxedEnvironment

from airflow_provider_hitpaw.errors import HitPawValidationError, MapIndexTooLongError
from airflow_provider_hitpaw.labels import (
    PHOTO_LABEL_LIMIT,
    RENDERED_MAP_INDEX_LIMIT,
    check_map_index,
    photo_label,
)
from airflow_provider_hitpaw.operators.hitpaw import EnhancePhotoOperator
from airflow_provider_hitpaw.version_compat import AirflowFailException
from tests.support.operator_support import make_context

SIGNED = "https://bucket.s3.amazonaws.com/shoots/Ann%20B%C3%A9.jpg?X-Amz-Signature=" + "f" * 600


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (SIGNED, "Ann Bé.jpg"),
        ("http://127.0.0.1:8899/samples/portrait.jpg?copy=1", "portrait.jpg"),
        ("https://cdn.example.com/a/b/photo.png#frag", "photo.png"),
        ("https://cdn.example.com/", "cdn.example.com"),
        ("https://cdn.example.com", "cdn.example.com"),
        ("https://cdn.example.com/a%0Ab%00c.jpg", "a b c.jpg"),  # no control characters
        ("http://[::1", "photo"),  # unparsable
        ("", "photo"),
        (None, "photo"),
    ],
)
def test_photo_label_is_the_file_name_without_the_query_string(url, label):
    assert photo_label(url) == label


def test_a_long_file_name_is_shortened_keeping_its_end():
    label = photo_label("https://h.example.com/" + "x" * 500 + "-0042.jpeg?sig=1")
    assert len(label) == PHOTO_LABEL_LIMIT
    assert label.startswith("xxx") and label.endswith("-0042.jpeg") and "…" in label


def test_the_operator_exposes_the_label_of_its_photo():
    task = EnhancePhotoOperator(task_id="t", img_url=SIGNED, model_name="face_2x")
    assert task.photo_label == "Ann Bé.jpg"


def test_a_template_rendering_longer_than_airflows_column_fails_before_any_request():
    task = EnhancePhotoOperator(task_id="t", img_url=SIGNED, model_name="face_2x")
    context = make_context(task=task, map_index_template="{{ task.img_url }}")
    with pytest.raises(MapIndexTooLongError, match=r"task\.photo_label") as caught:
        check_map_index(task, context)
    assert isinstance(caught.value, HitPawValidationError) and isinstance(caught.value, AirflowFailException)
    # The template left in the context renders within the column, so the failure can be recorded.
    rendered = SandboxedEnvironment().from_string(context["map_index_template"]).render(context)
    assert len(rendered) == RENDERED_MAP_INDEX_LIMIT and rendered.startswith("https://bucket")


@pytest.mark.parametrize(
    "template", [None, "", "{{ task.photo_label }}", "{{ no_such_thing.attribute }}", "{% broken"]
)
def test_short_missing_or_unrenderable_templates_are_left_to_airflow(template):
    task = EnhancePhotoOperator(task_id="t", img_url=SIGNED, model_name="face_2x")
    context = make_context(task=task, map_index_template=template)
    check_map_index(task, context)
    assert context["map_index_template"] == template
