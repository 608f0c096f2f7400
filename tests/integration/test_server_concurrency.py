"""Writes that race: a label given while an admin renames its class, two renames of one class at once, and a
reviewer's verdict sent for an annotation that was undone meanwhile (found by a QA pass with concurrent clients)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from pixclass.store import records
from pixclass.store.tables import Annotation, Image, LabelClass
from tests.integration.server_fixtures import make_server, tiny_source


@pytest.fixture()
def srv(tmp_path):
    return make_server(tmp_path / "ws", tiny_source(tmp_path / "tiny"))


def _ids(srv) -> list[int]:
    with srv.ws.session() as s:
        return list(s.scalars(select(Image.id).order_by(Image.id)))


def test_a_label_given_during_a_rename_is_never_left_in_the_old_name(srv):
    """The admin's rename holds the dataset; a label request arriving meanwhile waits, then sees the new names."""
    first = _ids(srv)[0]
    answer: dict = {}
    with srv.ws.session() as s:  # a rename in progress: the dataset is held until this commits
        ds = records.lock_dataset(s, records.get_dataset(s, "cloth"))
        late = threading.Thread(target=lambda: answer.update(r=srv.client("ann").post(
            f"/api/images/{first}/annotations", json={"labels": ["hat"]})))
        late.start()
        time.sleep(0.5)  # the request has read nothing yet: it waits for the dataset
        assert "r" not in answer
        s.scalar(select(LabelClass).where(LabelClass.dataset_id == ds.id, LabelClass.name == "hat")).name = "cap"
        s.execute(Annotation.__table__.update().values(labels=["cap"]).where(Annotation.labels == ["hat"]))
    late.join(20)
    r = answer["r"]
    assert r.status_code == 400 and "hat" in r.json()["detail"]  # refused, not stored under a name now gone
    with srv.ws.session() as s:
        classes = set(records.load_schema(s, records.get_dataset(s, "cloth")).classes)
        assert not [a.labels for a in s.scalars(select(Annotation)) if not set(a.labels) <= classes]


def test_two_renames_of_one_class_at_once_leave_one_name(srv):
    root, out = srv.client("root"), {}
    go = threading.Barrier(2)

    def rename(new):
        go.wait()
        out[new] = root.post("/api/datasets/cloth/classes/rename", json={"old": "hat", "new": new}).status_code

    threads = [threading.Thread(target=rename, args=(n,)) for n in ("cap", "beanie")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(out.values()) == [200, 400]
    winner = next(n for n, code in out.items() if code == 200)
    with srv.ws.session() as s:
        ds = records.get_dataset(s, "cloth")
        assert records.load_schema(s, ds).classes == (winner, "shoes")
        labels = {x for a in s.scalars(select(Annotation)) for x in a.labels}
    assert labels == {winner, "shoes"}


def test_a_verdict_for_an_undone_annotation_does_not_land_on_the_next_one(srv):
    first, other = _ids(srv)[0], _ids(srv)[-1]
    ann, bob, root = srv.client("ann"), srv.client("bob"), srv.client("root")
    stale = ann.post(f"/api/images/{first}/annotations", json={"labels": ["shoes"]}).json()["id"]
    assert ann.delete(f"/api/annotations/{stale}").status_code == 200  # undone
    fresh = bob.post(f"/api/images/{other}/annotations", json={"labels": ["hat"]}).json()["id"]
    assert fresh != stale
    assert root.post(f"/api/annotations/{stale}/review", json={"status": "rejected"}).status_code == 404
    assert root.get(f"/api/images/{other}").json()["annotations"][-1]["review"] is None


def test_an_undo_racing_a_verdict_sees_it(srv):
    """A reviewer accepting an annotation holds its dataset; its author's undo, arriving meanwhile, waits and is then
    refused (annotators cannot take back a reviewed label), instead of deleting the row under the verdict."""
    first = _ids(srv)[0]
    ann = srv.client("ann")
    mine = ann.post(f"/api/images/{first}/annotations", json={"labels": ["shoes"]}).json()["id"]
    answer: dict = {}
    with srv.ws.session() as s:
        [a] = records.locked_annotations(s, [mine])
        late = threading.Thread(target=lambda: answer.update(r=ann.delete(f"/api/annotations/{mine}")))
        late.start()
        time.sleep(0.5)
        assert "r" not in answer  # waiting for the verdict
        a.review, a.reviewer = "accepted", "root"
    late.join(20)
    assert answer["r"].status_code == 403 and "accepted by root" in answer["r"].json()["detail"]
    with srv.ws.session() as s:
        assert s.get(Annotation, mine).review == "accepted"
