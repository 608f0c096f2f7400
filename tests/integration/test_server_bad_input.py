"""Malformed requests get a 400 naming the field, never a 500: the Label Studio ML-backend routes and
POST /api/train with an unknown model name."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from pixclass.store.tables import Annotation
from tests.integration.server_fixtures import PASSWORDS, basic, make_server, tiny_source

EVENT = "ANNOTATION_CREATED"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A workspace with one tiny two-class dataset ("cloth") and no model."""
    src = tiny_source(tmp_path_factory.mktemp("tiny"))
    return make_server(tmp_path_factory.mktemp("ws"), src)


def post(srv, path: str, who: str = "ann", **kw):
    return srv.client().post(path, headers={**basic(who, PASSWORDS[who]), **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize(("body", "detail"), [
    (b"", "The body is empty; send a JSON object with 'tasks' (a list of task objects)."),
    (b"{not json", "The body is not valid JSON; send a JSON object with 'tasks' (a list of task objects)."),
    (b"\xff\xfe", "The body is not valid JSON; send a JSON object with 'tasks' (a list of task objects)."),
    (b"[1, 2]", "The body is a list; send a JSON object with 'tasks' (a list of task objects)."),
    (b'"tasks"', "The body is a string; send a JSON object with 'tasks' (a list of task objects)."),
    (b"{}", "field 'tasks' must be a list of task objects; got no such field."),
    (b'{"tasks": "abc"}', "field 'tasks' must be a list of task objects; got a string."),
    (b'{"tasks": null}', "field 'tasks' must be a list of task objects; got null."),
    (b'{"tasks": [{"data": {}}, 7]}', "field 'tasks' must be a list of task objects; item 1 is a number."),
    (b'{"tasks": [{"data": "x.jpg"}]}', "field 'tasks[0].data' must be an object."),
    (b'{"tasks": [], "label_config": 5}',
     "field 'label_config' must be a string (the project's labeling config XML)."),
])
def test_ls_predict_malformed_body_is_400_naming_the_field(srv, body, detail):
    r = post(srv, "/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json() == {"detail": detail}


def test_ls_predict_and_setup_still_answer_well_formed_requests(srv):
    r = post(srv, "/predict", json={"tasks": [], "label_config": "<View/>"})
    assert r.status_code == 200 and r.json() == {"results": [], "errors": []}
    r = post(srv, "/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}]})
    assert r.status_code == 200 and r.json() == {"results": [], "errors": []}  # no model yet: not an error
    for body in (b"", b"{not json", b"[1, 2]"):  # /setup never reads its body: a connection check always answers
        r = post(srv, "/setup", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {"model_version": "none"}
    assert post(srv, "/predict", who="view", content=b"").status_code == 400  # viewers may predict
    assert srv.client().post("/predict", content=b"").status_code == 401  # auth is checked before the body


@pytest.mark.parametrize(("body", "detail"), [
    ({"action": EVENT, "task": "x", "annotation": {"result": "y"}}, "field 'task' must be an object."),
    ({"action": EVENT, "task": {"id": 1}, "annotation": [1]}, "field 'annotation' must be an object."),
    ({"action": EVENT, "task": {"data": "x"}, "annotation": {}}, "field 'task.data' must be an object."),
    ({"action": EVENT, "task": {"id": 1}, "annotation": {"result": "y"}},
     "field 'annotation.result' must be a list of result objects."),
    ({"action": EVENT, "task": {"id": 1}, "annotation": {"result": ["y"]}},
     "field 'annotation.result[0]' must be an object with 'value'."),
    ({"action": "ANNOTATION_UPDATED", "task": {}, "annotation": {"result": [{"value": "hat"}]}},
     "field 'annotation.result[0].value' must be an object."),
    ({"action": EVENT, "annotation": {"result": [{"value": {"choices": "hat"}}]}},
     "field 'annotation.result[0].value.choices' must be a list of class names."),
    ({"action": EVENT, "annotation": {"result": [{"value": {"taxonomy": ["hat"]}}]}},
     "field 'annotation.result[0].value.taxonomy' must be a list of paths (lists of names)."),
    ({"action": EVENT, "annotation": {"lead_time": "slow", "result": []}},
     "field 'annotation.lead_time' must be a number of seconds (0 or more); got 'slow'."),
    ({"action": EVENT, "annotation": {"lead_time": -5, "result": []}},
     "field 'annotation.lead_time' must be a number of seconds (0 or more); got -5."),
    ({"action": EVENT, "annotation": {"id": {"a": 1}, "result": []}},
     "field 'annotation.id' must be Label Studio's annotation id, a number or a string; got an object."),
    ({"action": EVENT, "annotation": {"completed_by": [1], "result": []}},
     "field 'annotation.completed_by' must be a user id or a user object; got a list."),
    ({"action": "ANNOTATIONS_CREATED", "task": [{}, {}], "annotation": [{"id": 1}, {"id": True}]},
     "field 'annotation[1].id' must be Label Studio's annotation id, a number or a string; got a boolean."),
])
def test_ls_webhook_malformed_annotation_is_400_naming_the_field(srv, body, detail):
    r = post(srv, "/webhook", json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"detail": detail}


def test_ls_webhook_bad_bodies_and_harmless_oddities(srv):
    r = post(srv, "/webhook", content=b"nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"] == ("The body is not valid JSON; send a JSON object with 'action' and, for annotation "
                                  "events, 'task' and 'annotation'.")
    assert post(srv, "/webhook", json=[EVENT]).json()["detail"].startswith("The body is a list; ")
    # events pixclass does not handle are acknowledged whatever their payload looks like
    r = post(srv, "/webhook", json={"action": "TASKS_DELETED", "task": "x", "annotation": 3})
    assert r.status_code == 200 and r.json() == {"status": "Unknown event"}
    # an image id too large for the database, or not ASCII digits, is simply not a registered image
    for image_id in ("9" * 40, "²", 10**30):
        r = post(srv, "/webhook", json={"action": EVENT, "task": {"data": {"pixclass_image_id": image_id}},
                                        "annotation": {"result": [{"value": {"choices": ["hat"]}}]}})
        assert r.status_code == 201 and r.json() == {"status": "ok", "stored": 0,
                                                     "reason": "task image not registered in pixclass"}


def test_ls_webhook_never_stores_two_labels_on_a_single_label_image(srv):
    """A Choices control with choice="multiple" on a binary or multiclass dataset: the vote is not stored (it would
    make the dataset untrainable), and the answer says why."""
    image_id = srv.client("view").get("/api/datasets/cloth/images").json()["ids"][0]
    with srv.ws.session() as s:
        before = len(s.scalars(select(Annotation)).all())
    r = post(srv, "/webhook", json={"action": EVENT, "task": {"data": {"pixclass_image_id": image_id}},
                                    "annotation": {"id": 77, "result": [{"value": {"choices": ["hat", "shoes"]}}]}})
    assert r.status_code == 201 and r.json() == {"status": "ok", "stored": 0, "image_id": image_id, "reason":
                                                 "a binary image takes exactly one label; got ['hat', 'shoes']"}
    r = post(srv, "/webhook", json={"action": EVENT, "task": {"data": {"pixclass_image_id": image_id}},
                                    "annotation": {"result": [{"value": {"choices": ["shoes", "shoes"]}}]}})
    assert r.status_code == 201 and r.json()["stored"] == 1  # the same class twice is one label
    with srv.ws.session() as s:
        added = s.scalars(select(Annotation).order_by(Annotation.id)).all()[before:]
    assert [(a.labels, a.author) for a in added] == [(["shoes"], "label-studio")]  # no author given: not "None"


def test_train_unknown_model_is_rejected_before_a_job_is_queued(srv):
    c = srv.client("ann")
    r = c.post("/api/train", json={"dataset": "cloth", "model": "resnet999"})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith("Unknown model 'resnet999'. Did you mean resnet")
    assert detail.endswith("Run `pixclass models` to list names.")
    r = c.post("/api/train", json={"dataset": "cloth", "model": "tv/nonet"})
    assert r.status_code == 400 and "Unknown model 'tv/nonet'" in r.json()["detail"]
    assert c.get("/api/jobs").json() == []  # nothing was queued
    r = c.post("/api/train", json={"dataset": "nope", "model": "resnet999"})  # the dataset is checked first
    assert r.status_code == 400 and "nope" in r.json()["detail"]
