"""REST API of the labeling server: auth and roles, labeling, filters, uploads, concurrency, review, classes."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from pixclass.server import ServerSettings
from pixclass.store import records
from pixclass.store.tables import Annotation, Image, LabelClass
from tests.integration.server_fixtures import PASSWORDS, basic, make_server
from tests.pg import fresh_database


@pytest.fixture()
def srv(tmp_path, photos4):
    return make_server(tmp_path / "ws", photos4)


def ids(srv, **params) -> list[int]:
    r = srv.client("view").get("/api/datasets/cloth/images", params=params)
    assert r.status_code == 200, r.text
    return r.json()["ids"]


def test_health_and_openapi_without_auth_everything_else_needs_it(srv):
    c = srv.client()
    assert c.get("/health").json()["status"] == "UP"
    paths = c.get("/openapi.json").json()["paths"]
    for p in ("/api/predict", "/predict", "/setup", "/webhook", "/api/datasets/{name}/images", "/api/jobs/{job_id}"):
        assert p in paths
    for method, path in [("get", "/api/datasets"), ("get", "/api/images/1/file"), ("post", "/setup"),
                         ("post", "/predict"), ("get", "/api/jobs"), ("post", "/api/predict")]:
        r = getattr(c, method)(path)
        assert r.status_code == 401, (path, r.status_code)
    assert c.get("/api/datasets", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/api/datasets", headers=basic("ann", "wrong")).status_code == 401
    r = c.get("/api/datasets", headers=basic("ann", PASSWORDS["ann"]))
    assert r.status_code == 200 and r.json()[0]["images"] == 120
    assert c.get("/api/auth/me", headers={"Authorization": f"Token {srv.tokens['view']}"}).json()["role"] == "viewer"


def test_roles(srv):
    first = ids(srv)[0]
    view, ann, admin = srv.client("view"), srv.client("ann"), srv.client("root")
    assert view.post(f"/api/images/{first}/annotations", json={"labels": ["hat"]}).status_code == 403
    assert ann.delete(f"/api/images/{first}").status_code == 403
    assert ann.post("/api/datasets/cloth/classes", json={"names": ["scarf"]}).status_code == 403
    assert ann.post("/api/datasets/cloth/classes/merge", json={"sources": ["hat"], "target": "x"}).status_code == 403
    assert ann.post("/api/images/curation", json={"image_ids": [first], "excluded": True}).status_code == 403
    assert ann.post("/api/users", json={"name": "x", "role": "admin", "password": "xxxx"}).status_code == 403
    assert admin.delete(f"/api/images/{first}").status_code == 200
    assert first not in ids(srv)


def test_session_cookie_needs_csrf_header_for_writes_and_logout_ends_it(srv):
    c = srv.client()
    assert c.post("/api/auth/login", json={"name": "ann", "password": "bad"}).status_code == 401
    r = c.post("/api/auth/login", json={"name": "ann", "password": PASSWORDS["ann"]})
    assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/api/auth/me").json()["name"] == "ann"
    first = ids(srv)[0]
    assert c.post(f"/api/images/{first}/annotations", json={"labels": ["hat"]}).status_code == 403
    ok = c.post(f"/api/images/{first}/annotations", json={"labels": ["hat"]}, headers={"X-Requested-With": "x"})
    assert ok.status_code == 200
    c.post("/api/auth/logout", headers={"X-Requested-With": "x"})
    assert c.get("/api/auth/me").status_code == 401


def test_annotation_records_user_time_and_validates_labels(srv):
    first = ids(srv, label="hat")[0]
    ann = srv.client("ann")
    r = ann.post(f"/api/images/{first}/annotations", json={"labels": ["shoes"], "time_spent": 2.5})
    assert r.status_code == 200
    bad = ann.post(f"/api/images/{first}/annotations", json={"labels": ["shoe"]})
    assert bad.status_code == 400 and "shoes" in bad.json()["detail"]  # close match suggested
    assert ann.post(f"/api/images/{first}/annotations", json={"labels": ["hat", "shoes"]}).status_code == 400
    with srv.ws.session() as s:
        rows = list(s.scalars(select(Annotation).where(Annotation.image_id == first).order_by(Annotation.id)))
    assert [(a.source, a.labels) for a in rows] == [("import", ["hat"]), ("human", ["shoes"])]  # import kept
    assert rows[1].author == "ann" and rows[1].time_spent == 2.5 and rows[1].created_at is not None
    detail = srv.client("view").get(f"/api/images/{first}").json()
    assert detail["labels"] == ["shoes"] and detail["annotators"] == ["ann"] and len(detail["annotations"]) == 2


def test_filters(srv):
    everything = ids(srv)
    hats = ids(srv, label="hat")
    assert len(everything) == 120 and len(hats) == 30
    admin = srv.client("root")
    admin.post("/api/images/curation", json={"image_ids": hats[:3], "excluded": True})
    assert ids(srv, excluded="only") == hats[:3]
    assert len(ids(srv, excluded="hide")) == 117
    srv.client("ann").post(f"/api/images/{hats[5]}/annotations", json={"labels": ["pants"]})
    assert ids(srv, annotator="ann") == [hats[5]]
    up = srv.client("ann").post("/api/datasets/cloth/upload",
                                files={"files": ("new.png", _png(), "image/png")})
    new_id = up.json()["added"][0]
    assert ids(srv, unlabeled="true") == [new_id]
    assert new_id not in ids(srv, labeled="true") and len(ids(srv, labeled="true")) == len(ids(srv)) - 1
    assert set(ids(srv, split="train")) < set(everything + [new_id])
    assert srv.client("view").get("/api/datasets/cloth/images", params={"min_conf": 2}).status_code == 422


def _png(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_images_served_only_by_registered_id(srv, photos4):
    first = ids(srv)[0]
    c = srv.client("view")
    with srv.ws.session() as s:
        path = Path(s.get(Image, first).path)
    r = c.get(f"/api/images/{first}/file")
    assert r.status_code == 200 and r.content == path.read_bytes()
    assert c.get("/api/images/999999/file").status_code == 404
    for bad in ("/api/images/..%2F..%2Fetc%2Fpasswd/file", "/api/images/../../etc/passwd", "/static/../pixclass.db",
                "/static/..%2F..%2Fstore%2Fdb.py"):
        r = c.get(bad)
        assert r.status_code in (404, 422) and b"root:" not in r.content and b"SQLite" not in r.content
    t = c.get(f"/api/images/{first}/thumb", params={"size": 64})
    assert t.headers["content-type"] == "image/jpeg"
    assert max(PILImage.open(io.BytesIO(t.content)).size) == 64


def test_upload_limits_and_bad_files(tmp_path, photos4):
    srv = make_server(tmp_path / "ws", photos4, settings=ServerSettings(max_upload_bytes=50_000, max_upload_files=2))
    c = srv.client("ann")
    big = c.post("/api/datasets/cloth/upload", files={"files": ("big.bin", b"x" * 60_000)})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    many = c.post("/api/datasets/cloth/upload", files=[("files", (f"{i}.png", _png(), "image/png")) for i in range(3)])
    detail = many.json()["detail"]
    assert many.status_code == 400 and "Maximum number of files is 2." in detail and "400:" not in detail, detail
    assert "at most 2 files a request" in detail
    r = c.post("/api/datasets/cloth/upload", files=[("files", ("../../evil.png", _png((1, 2, 3)), "image/png")),
                                                   ("files", ("junk.jpg", b"not an image", "image/jpeg"))])
    body = r.json()
    assert r.status_code == 200 and len(body["added"]) == 1
    assert body["rejected"][0]["name"] == "junk.jpg" and "not an image" in body["rejected"][0]["reason"]
    with srv.ws.session() as s:
        stored = Path(s.get(Image, body["added"][0]).path)
    assert stored.parent == (srv.ws.root / "uploads" / "cloth").resolve() and ".." not in stored.name
    assert srv.client("view").post("/api/datasets/cloth/upload", files={"files": ("a.png", _png())}).status_code == 403
    # a unicode name is kept; a JPEG named .png is served as a JPEG; a 130-megapixel PNG is refused by name (no 500)
    # and leaves no file behind
    from tests.unit.io.test_large_images import solid_png

    bomb = solid_png(tmp_path / "bomb.png", 13_000, 10_000).read_bytes()
    buf = io.BytesIO()
    PILImage.new("RGB", (400, 300), (200, 10, 10)).save(buf, "JPEG")
    r = c.post("/api/datasets/cloth/upload", files=[("files", ("café 日本.png", buf.getvalue(), "image/png")),
                                                   ("files", ("bomb.png", bomb, "image/png"))])
    body = r.json()
    assert r.status_code == 200 and len(body["added"]) == 1, body
    assert body["rejected"][0]["name"] == "bomb.png" and "too large" in body["rejected"][0]["reason"]
    with srv.ws.session() as s:
        stored = Path(s.get(Image, body["added"][0]).path)
    assert stored.name.endswith("café_日本.png")
    assert not any("bomb" in p.name for p in stored.parent.iterdir())
    served = c.get(f"/api/images/{body['added'][0]}/file")
    assert served.headers["content-type"] == "image/jpeg"
    thumb = c.get(f"/api/images/{body['added'][0]}/thumb", params={"size": 64})
    assert thumb.status_code == 200 and PILImage.open(io.BytesIO(thumb.content)).size == (64, 48)


def test_concurrent_writes_lose_nothing(srv):
    targets = ids(srv)[:10]
    clients = {"ann": srv.client("ann"), "bob": srv.client("bob")}
    errors = []

    def work(who: str, label: str) -> None:
        for i in targets:
            r = clients[who].post(f"/api/images/{i}/annotations", json={"labels": [label], "time_spent": 1.0})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=a) for a in (("ann", "hat"), ("bob", "pants"))] * 1
    threads += [threading.Thread(target=work, args=("ann", "shoes")), threading.Thread(target=work, args=("bob", "hat"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with srv.ws.session() as s:
        human = list(s.scalars(select(Annotation).where(Annotation.source == "human")))
    assert len(human) == 40
    assert {(a.author, tuple(a.labels)) for a in human} == {("ann", ("hat",)), ("ann", ("shoes",)),
                                                             ("bob", ("pants",)), ("bob", ("hat",))}


def test_agreement_conflicts_and_review(srv):
    a, b, c = ids(srv, label="hat")[:3]
    ann, bob = srv.client("ann"), srv.client("bob")
    for i in (a, b, c):
        ann.post(f"/api/images/{i}/annotations", json={"labels": ["hat"]})
    assert bob.post(f"/api/images/{a}/annotations", json={"labels": ["hat"]}).json()["disagree"] == {}
    assert bob.post(f"/api/images/{b}/annotations", json={"labels": ["pants"]}).json()["disagree"] == {"ann": ["hat"]}
    ag = srv.client("view").get("/api/datasets/cloth/agreement").json()
    assert ag["images_multi"] == 2 and ag["conflicts"] == 1 and ag["mean_image_agreement"] == 0.5
    assert ag["pairs"] == [{"a": "ann", "b": "bob", "images": 2, "agreement": 0.5, "kappa": 0.0}]
    # per annotator: ann and bob agree on one of the two images they share, whoever voted last
    who = {a["annotator"]: a for a in srv.client("view").get("/api/datasets/cloth/annotators").json()}
    assert set(who) == {"ann", "bob"}
    assert (who["ann"]["images"], who["ann"]["shared_images"], who["ann"]["agreement_with_others"]) == (3, 2, 0.5)
    assert (who["bob"]["images"], who["bob"]["pending"], who["bob"]["agreement_with_others"]) == (2, 2, 0.5)
    conflicts = srv.client("view").get("/api/datasets/cloth/conflicts").json()
    assert [x["id"] for x in conflicts] == [b] and conflicts[0]["by_author"] == {"ann": ["hat"], "bob": ["pants"]}
    assert ids(srv, conflicts="true") == [b]
    bob_ann = srv.client("view").get(f"/api/images/{b}").json()["annotations"][-1]
    assert ann.post(f"/api/annotations/{bob_ann['id']}/review", json={"status": "rejected"}).status_code == 403
    r = srv.client("root").post(f"/api/annotations/{bob_ann['id']}/review", json={"status": "rejected"})
    assert r.json()["review"] == "rejected" and r.json()["reviewer"] == "root"
    assert ids(srv, conflicts="true") == []  # the rejected label no longer conflicts, but it is kept
    with srv.ws.session() as s:
        assert s.get(Annotation, bob_ann["id"]).labels == ["pants"]
    # the rejected label is nobody's label any more: not the image's, not bob's vote, not what training sees
    view = srv.client("view")
    assert view.get(f"/api/images/{b}").json()["labels"] == ["hat"] and b not in ids(srv, label="pants")
    assert view.get(f"/api/images/{b}").json()["annotators"] == ["ann"]
    with srv.ws.session() as s:
        assert records.current_labels(s, [b]) == {b: ["hat"]}
    # an image whose only label is rejected is unlabeled again (and in the label queue)
    [lone] = [i for i in ids(srv, label="shoes")[:1]]
    with srv.ws.session() as s:
        imported = s.scalar(select(Annotation).where(Annotation.image_id == lone))
    srv.client("root").post(f"/api/annotations/{imported.id}/review", json={"status": "rejected"})
    assert lone in ids(srv, unlabeled="true") and lone not in ids(srv, label="shoes")
    assert lone in srv.client("view").get("/api/datasets/cloth/queue", params={"strategy": "random", "n": 500}
                                          ).json()["image_ids"]
    # accepting settles a conflict: the accepted label is the image's, even against a newer vote
    bob.post(f"/api/images/{c}/annotations", json={"labels": ["shoes"]})
    assert ids(srv, conflicts="true") == [c] and view.get(f"/api/images/{c}").json()["labels"] == ["shoes"]
    ann_c = view.get(f"/api/images/{c}").json()["annotations"][-2]
    assert ann_c["author"] == "ann" and ann_c["labels"] == ["hat"]
    srv.client("root").post(f"/api/annotations/{ann_c['id']}/review", json={"status": "accepted"})
    assert ids(srv, conflicts="true") == [] and view.get(f"/api/images/{c}").json()["labels"] == ["hat"]
    assert c in ids(srv, label="hat") and c not in ids(srv, label="shoes")
    with srv.ws.session() as s:
        assert records.current_labels(s, [c]) == {c: ["hat"]}
    assert view.get(f"/api/images/{c}").json()["agreement"] == 0.0  # the disagreement is still shown
    # a reviewed annotation is the reviewer's to take back, not its author's
    assert ann.delete(f"/api/annotations/{ann_c['id']}").status_code == 403
    srv.client("root").post(f"/api/annotations/{ann_c['id']}/review", json={"status": "pending"})
    assert ids(srv, conflicts="true") == [c]
    # a vote cast after the verdict is a new conflict; the accepted label holds until its author changes it
    srv.client("root").post(f"/api/annotations/{ann_c['id']}/review", json={"status": "accepted"})
    assert ids(srv, conflicts="true") == []
    bob.post(f"/api/images/{c}/annotations", json={"labels": ["pants"]})
    assert ids(srv, conflicts="true") == [c] and view.get(f"/api/images/{c}").json()["labels"] == ["hat"]
    ann.post(f"/api/images/{c}/annotations", json={"labels": ["t-shirt"]})  # ann replaces her accepted label
    assert view.get(f"/api/images/{c}").json()["labels"] == ["t-shirt"]
    # rejecting someone's newest label does not bring back the one they replaced
    d = ids(srv, label="hat")[-1]
    bob.post(f"/api/images/{d}/annotations", json={"labels": ["pants"]})
    shoes = bob.post(f"/api/images/{d}/annotations", json={"labels": ["shoes"]}).json()
    srv.client("root").post(f"/api/annotations/{shoes['id']}/review", json={"status": "rejected"})
    assert view.get(f"/api/images/{d}").json()["labels"] == ["hat"]  # the imported label, not bob's old pants
    assert view.get(f"/api/images/{d}").json()["annotators"] == []
    with srv.ws.session() as s:
        assert records.current_labels(s, [c, d]) == {c: ["t-shirt"], d: ["hat"]}
    # the reviewer's filters: what has no verdict yet, what was accepted, rejected, or relabeled after a verdict
    detail = view.get(f"/api/images/{c}").json()
    assert detail["changed"] is True and detail["review"] is None  # ann replaced the label root had accepted
    ann_a = view.get(f"/api/images/{a}").json()
    srv.client("root").post(f"/api/annotations/{ann_a['annotation_id']}/review", json={"status": "accepted"})
    assert view.get(f"/api/images/{a}").json()["review"] == "accepted"
    assert ids(srv, review="accepted") == [a] and ids(srv, review="changed") == [c]
    assert set(ids(srv, review="rejected")) == {b, d, lone}
    pending = ids(srv, review="pending")
    assert {b, c, d} <= set(pending) and a not in pending and lone not in pending
    assert len(pending) == len(ids(srv, labeled="true")) - 1


def test_undo_only_own_annotations(srv):
    first = ids(srv)[0]
    a = srv.client("ann").post(f"/api/images/{first}/annotations", json={"labels": ["hat"]}).json()
    assert srv.client("bob").delete(f"/api/annotations/{a['id']}").status_code == 403
    imported = srv.client("view").get(f"/api/images/{first}").json()["annotations"][0]
    assert srv.client("ann").delete(f"/api/annotations/{imported['id']}").status_code == 403
    assert srv.client("ann").delete(f"/api/annotations/{a['id']}").status_code == 200
    assert srv.client("view").get(f"/api/images/{first}").json()["annotators"] == []


def test_bulk_tagging_and_class_editing(srv):
    admin = srv.client("root")
    r = admin.post("/api/datasets/cloth/classes", json={"names": ["scarf", "belt", "hat", " "]})
    assert r.json()["added"] == 2 and r.json()["classes"][-2:] == ["scarf", "belt"] and r.json()["existing"] == ["hat"]
    for names, why in ((["  ", ""], "No class names"), (["Hat"], "'Hat' differs from 'hat' only in letter case"),
                       (["cap", "CAP"], "'CAP' differs from 'cap'")):
        r = admin.post("/api/datasets/cloth/classes", json={"names": names})
        assert r.status_code == 400 and why in r.json()["detail"], r.text
    assert "cap" not in admin.get("/api/datasets/cloth").json()["classes"]  # nothing created on a refusal
    sel = ids(srv, label="pants")[:4]
    wrong = srv.client("ann").post("/api/annotations/bulk", json={"image_ids": sel, "labels": ["scarf"]}).json()
    assert wrong["annotated"] == 4 and wrong["retrain_job"] is None  # no automatic retraining configured
    assert ids(srv, label="scarf") == sel and len(wrong["annotation_ids"]) == 4
    # a bulk edit is taken back whole: only by its author (or an admin), all or nothing
    assert srv.client("bob").post("/api/annotations/undo", json={"ids": wrong["annotation_ids"]}).status_code == 403
    assert ids(srv, label="scarf") == sel
    undone = srv.client("ann").post("/api/annotations/undo", json={"ids": wrong["annotation_ids"] + [987654]})
    assert undone.json() == {"deleted": 4} and ids(srv, label="scarf") == [] and ids(srv, label="pants")[:4] == sel
    assert srv.client("ann").post("/api/annotations/undo", json={"ids": []}).status_code == 422
    assert srv.client("ann").post("/api/annotations/bulk", json={"image_ids": sel, "labels": ["belt"]}).json()[
        "annotated"] == 4
    assert ids(srv, label="belt") == sel
    stale = srv.client("ann").post("/api/annotations/bulk", json={"image_ids": [sel[0], 999999], "labels": ["hat"]})
    assert stale.status_code == 404 and "999999" in stale.json()["detail"] and ids(srv, label="belt") == sel
    assert srv.client("ann").post("/api/annotations/bulk", json={"image_ids": sel, "labels": ["belt"],
                                                                "mode": "add"}).status_code == 400  # multiclass
    r = admin.post("/api/datasets/cloth/classes/rename", json={"old": "belt", "new": "strap"})
    assert "strap" in r.json()["classes"] and "belt" not in r.json()["classes"] and r.json()["relabeled"] == 4
    assert ids(srv, label="strap") == sel
    same = admin.post("/api/datasets/cloth/classes/rename", json={"old": "strap", "new": "strap"})
    assert same.status_code == 400 and "already has that name" in same.json()["detail"]
    assert admin.post("/api/datasets/cloth/classes/rename", json={"old": "strap", "new": "hat"}).status_code == 409
    r = admin.post("/api/datasets/cloth/classes/merge", json={"sources": ["strap", "scarf", "pants"],
                                                             "target": "bottoms"})
    assert r.json()["classes"] == ["hat", "bottoms", "shoes", "t-shirt"]
    assert len(ids(srv, label="bottoms")) == 30 and ids(srv, label="pants") == []
    with srv.ws.session() as s:
        names = set(s.scalars(select(LabelClass.name)))
    assert names == {"hat", "bottoms", "shoes", "t-shirt"}


def test_class_names_and_task_kinds_are_checked_before_anything_is_stored(srv, tmp_path, photos4):
    """Blank class or user names, a third class on a binary dataset, and a task kind that an existing dataset does
    not have are 400s naming the problem, and leave the classes and labels as they were."""
    admin = srv.client("root")
    before = admin.get("/api/datasets/cloth").json()["classes"]
    hats = ids(srv, label="hat")
    for path, body in (("rename", {"old": "hat", "new": "   "}), ("merge", {"sources": ["hat"], "target": "\t "})):
        r = admin.post(f"/api/datasets/cloth/classes/{path}", json=body)
        assert r.status_code == 400 and "is empty" in r.json()["detail"], r.text
    assert admin.get("/api/datasets/cloth").json()["classes"] == before and ids(srv, label="hat") == hats
    r = admin.post("/api/datasets/cloth/classes/rename", json={"old": "hat", "new": " cap\t"})
    assert r.json()["classes"][0] == "cap" and ids(srv, label="cap") == hats  # stored without the blanks

    assert admin.post("/api/datasets", json={"name": "blank", "classes": ["ok", " "]}).status_code == 400
    r = admin.post("/api/datasets", json={"name": "yesno", "task": "binary", "classes": ["a", "b", "c"]})
    assert r.status_code == 400 and "A binary dataset has two classes" in r.json()["detail"]
    assert admin.post("/api/datasets", json={"name": "yesno", "task": "binary", "classes": ["no", "yes"]}).is_success
    r = admin.post("/api/datasets/yesno/classes", json={"names": ["maybe"]})
    assert r.status_code == 400 and admin.get("/api/datasets/yesno").json()["classes"] == ["no", "yes"]
    assert [d["name"] for d in admin.get("/api/datasets").json()] == ["cloth", "yesno"]

    for task in ("bogus", "multilabel"):  # refused before a job is queued
        r = admin.post("/api/datasets/import", json={"src": str(photos4), "name": "cloth", "task": task})
        assert r.status_code == 400, r.text
    assert "'cloth' is a multiclass dataset; it cannot become multilabel" in r.json()["detail"]
    assert admin.get("/api/jobs").json() == []
    r = admin.post("/api/users", json={"name": "  ", "role": "annotator", "password": "pw-long"})
    assert r.status_code == 400 and "spaces around it" in r.json()["detail"]


def test_multilabel_bulk_add_and_remove(tmp_path, photos4):
    srv = make_server(tmp_path / "ws", photos4, task="multilabel")
    sel = ids(srv, label="hat")[:3]
    ann = srv.client("ann")
    assert ann.post("/api/annotations/bulk", json={"image_ids": sel, "labels": ["shoes"], "mode": "add"}).status_code \
        == 200
    assert srv.client("view").get(f"/api/images/{sel[0]}").json()["labels"] == ["hat", "shoes"]
    ann.post("/api/annotations/bulk", json={"image_ids": sel[:1], "labels": ["hat"], "mode": "remove"})
    assert srv.client("view").get(f"/api/images/{sel[0]}").json()["labels"] == ["shoes"]
    assert ann.post(f"/api/images/{sel[1]}/annotations", json={"labels": ["hat", "pants"]}).status_code == 200


def test_labelstudio_export_download(srv, photos4):
    first, second = ids(srv)[:2]
    for who, labels in (("ann", ["hat"]), ("bob", ["shoes"])):
        assert srv.client(who).post(f"/api/images/{first}/annotations", json={"labels": labels}).status_code == 200
    assert srv.client().get("/api/datasets/cloth/export/labelstudio").status_code == 401
    r = srv.client("view").get("/api/datasets/cloth/export/labelstudio", params={"document_root": str(photos4)})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    tasks = {t["data"]["pixclass_image_id"]: t for t in r.json()}
    assert len(tasks) == 120 and not any("predictions" in t for t in tasks.values())  # no run yet: no suggestions
    votes = sorted(a["result"][0]["value"]["choices"][0] for a in tasks[first]["annotations"])
    assert votes == ["hat", "hat", "shoes"]  # the folder's label and both annotators', none lost
    # the folder import's labels are there too, and image URLs are relative to Label Studio's document root
    assert [a["result"][0]["value"]["choices"] for a in tasks[second]["annotations"]]
    assert tasks[second]["data"]["image"].startswith("/data/local-files/?d=") and str(photos4) not in \
        tasks[second]["data"]["image"]
    xml = srv.client("view").get("/api/datasets/cloth/export/labelstudio.xml", params={"from_name": "garment"})
    assert xml.status_code == 200 and '<Choices name="garment" toName="image"' in xml.text
    r = srv.client("view").get("/api/datasets/nope/export/labelstudio")
    assert r.status_code == 400 and "nope" in r.json()["detail"]


def test_labelstudio_export_follows_review_and_reimports_the_same_labels(tmp_path, photos4):
    """A rejected annotation is not exported; an accepted one is the task's ground truth, and importing the export
    gives every image the label it has in pixclass."""
    from pixclass.io.importer import import_dataset

    srv = make_server(tmp_path / "ws", photos4)
    a, b, c = ids(srv, label="pants")[:3]
    ann, bob, root, view = (srv.client(w) for w in ("ann", "bob", "root", "view"))
    ann.post(f"/api/images/{a}/annotations", json={"labels": ["hat"]})
    bob_a = bob.post(f"/api/images/{a}/annotations", json={"labels": ["shoes"]}).json()
    root.post(f"/api/annotations/{bob_a['id']}/review", json={"status": "rejected"})  # a: ann's hat
    ann_b = ann.post(f"/api/images/{b}/annotations", json={"labels": ["hat"]}).json()
    bob.post(f"/api/images/{b}/annotations", json={"labels": ["shoes"]})
    root.post(f"/api/annotations/{ann_b['id']}/review", json={"status": "accepted"})  # b: hat, against newer shoes
    imported_c = view.get(f"/api/images/{c}").json()["annotations"][0]
    root.post(f"/api/annotations/{imported_c['id']}/review", json={"status": "rejected"})  # c: no label left

    tasks = {t["data"]["pixclass_image_id"]: t
             for t in view.get("/api/datasets/cloth/export/labelstudio").json()}
    def choices(task: dict) -> list[tuple[list[str], bool]]:
        return [(x["result"][0]["value"]["choices"], x["ground_truth"]) for x in task["annotations"]]

    assert (["shoes"], False) not in choices(tasks[a]) and (["hat"], False) in choices(tasks[a])
    assert [x for x in choices(tasks[b]) if x[1]] == [(["hat"], True)]
    assert choices(tasks[c]) == []
    export = tmp_path / "export.json"
    export.write_text(json.dumps(list(tasks.values())))
    import_dataset(srv.ws, export, "again")
    with srv.ws.session() as s:
        before = {it.path: it.labels for it in records.items(s, records.get_dataset(s, "cloth"))}
        after = {it.path: it.labels for it in records.items(s, records.get_dataset(s, "again"))}
        paths = {i: s.get(Image, i).path for i in (a, b, c)}
    assert after == before  # the same label for every image, c unlabeled in both
    assert (after[paths[a]], after[paths[b]], after[paths[c]]) == (("hat",), ("hat",), ())


def _other_process(ws_root: Path, code: str, url: str | None = None) -> None:
    """Run ``code`` with ``ws`` open and ``records``/``tables`` imported, in a separate Python process."""
    import subprocess
    import sys

    prelude = ("from pixclass.store import Workspace, records\nfrom pixclass.store.tables import Annotation, Image\n"
               f"ws = Workspace.open({str(ws_root)!r}, url={url!r})\n")
    subprocess.run([sys.executable, "-c", prelude + code], check=True, timeout=120)


def test_grid_rows_are_reused_until_anything_writes(srv, tmp_path):
    """The grid's rows are computed once and reused while nothing changes; any write shows at once: this server's
    own (labels, verdicts, curation flags) and another process's (a CLI fixing curation findings, an import)."""
    tables = srv.app.state.tables
    with srv.ws.session() as s:
        ds = records.get_dataset(s, "cloth")
        first = tables.get(s, ds)
        assert tables.get(s, ds) is first  # nothing written: the same rows
    before = srv.ws.revision
    with srv.ws.session() as s:
        records.items(s, records.get_dataset(s, "cloth"))
    assert srv.ws.revision == before  # reading is not writing
    hats = ids(srv, label="hat")
    srv.client("ann").post(f"/api/images/{hats[0]}/annotations", json={"labels": ["pants"]})
    assert srv.ws.revision > before and hats[0] in ids(srv, label="pants")
    srv.client("root").post("/api/images/curation", json={"image_ids": hats[1:3], "excluded": True})
    assert ids(srv, excluded="only") == hats[1:3]
    _other_process(srv.ws.root, f"with ws.session() as s:\n    s.get(Image, {hats[3]}).excluded = True\n")
    assert ids(srv, excluded="only") == hats[1:4]
    _other_process(srv.ws.root, "with ws.session() as s:\n"
                                f"    s.add(Annotation(image_id={hats[4]}, labels=['shoes'], source='human', author='cli'))\n")
    assert ids(srv, label="shoes", annotator="cli") == [hats[4]]
    ann = srv.client("view").get(f"/api/images/{hats[4]}").json()["annotation_id"]
    srv.client("root").post(f"/api/annotations/{ann}/review", json={"status": "rejected"})
    assert hats[4] in ids(srv, label="hat") and ids(srv, review="rejected") == [hats[4]]
    # another server on the same database clears that verdict (reviews and renames change no count or id: the
    # dataset's revision, bumped by every write that holds it, tells)
    _other_process(srv.ws.root, f"with ws.session() as s:\n    [a] = records.locked_annotations(s, [{ann}])\n"
                                "    a.review = a.reviewer = a.reviewed_at = None\n")
    assert ids(srv, review="rejected") == [] and hats[4] in ids(srv, label="shoes")


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_after_labels_verdicts_and_undos_only_those_images_rows_are_computed_again(db, request, tmp_path, photos4):
    """Writes of this server that touch only annotations redo only those images' rows (the first grid page after a
    label on 50,000 images costs a small query, not all rows); anything else, or another process's write, still
    computes all rows again, so nothing shows stale."""
    url = fresh_database(request.getfixturevalue("postgres_url"), "pixclass_patch") if db == "postgresql" else None
    srv = make_server(tmp_path / "ws", photos4, url=url)
    tables, ann, root = srv.app.state.tables, srv.client("ann"), srv.client("root")
    hats, pants = ids(srv, label="hat"), ids(srv, label="pants")
    with srv.ws.session() as s:
        first = tables.get(s, records.get_dataset(s, "cloth"))

    def counts():
        return tables.computed, tables.patched

    start = counts()
    a = ann.post(f"/api/images/{hats[0]}/annotations", json={"labels": ["pants"]}).json()
    assert hats[0] in ids(srv, label="pants", annotator="ann") and counts() == (start[0], start[1] + 1)
    with srv.ws.session() as s:
        now = tables.get(s, records.get_dataset(s, "cloth"))
    assert first[hats[0]].labels == ["hat"] and now[hats[0]].labels == ["pants"]  # kept rows are never changed
    assert now[hats[1]] is first[hats[1]]  # the other rows are the ones kept
    tagged = ann.post("/api/annotations/bulk", json={"image_ids": hats[1:4], "labels": ["shoes"]}).json()
    root.post(f"/api/annotations/{a['id']}/review", json={"status": "rejected"})
    assert ids(srv, label="shoes", annotator="ann") == hats[1:4] and ids(srv, review="rejected") == [hats[0]]
    ann.post("/api/annotations/undo", json={"ids": tagged["annotation_ids"][:2]})
    root.post("/api/datasets/cloth/accept-suggestions", json={"threshold": 0.0})  # no suggestions: writes nothing
    assert ids(srv, label="shoes", annotator="ann") == [hats[3]] and hats[1] in ids(srv, label="hat")
    assert ann.post("/api/images/999999/annotations", json={"labels": ["hat"]}).status_code == 404
    assert ann.post(f"/api/images/{hats[5]}/annotations", json={"labels": ["scarf"]}).status_code == 400
    assert hats[5] in ids(srv, label="hat") and counts() == (start[0], start[1] + 4)  # each listing after writes
    # anything else computes every row again: here a curation flag
    root.post("/api/images/curation", json={"image_ids": [pants[0]], "excluded": True})
    assert ids(srv, excluded="only") == [pants[0]] and counts()[0] == start[0] + 1
    # another process adds a label while this server labels (no lock: the count of annotations tells)
    cli = f"Annotation(image_id={pants[1]}, labels=['hat'], source='human', author='cli')"
    _other_process(srv.ws.root, f"with ws.session() as s:\n    s.add({cli})\n", url)
    ann.post(f"/api/images/{pants[2]}/annotations", json={"labels": ["hat"]})
    assert {pants[1], pants[2]} <= set(ids(srv, label="hat")) and counts()[0] == start[0] + 2
    # another server gives a verdict (its lock of the dataset tells) while this one labels
    _other_process(srv.ws.root, f"with ws.session() as s:\n    [a] = records.locked_annotations(s, [{a['id']}])\n"
                                "    a.review = a.reviewer = a.reviewed_at = None\n", url)
    ann.post(f"/api/images/{pants[3]}/annotations", json={"labels": ["hat"]})
    assert ids(srv, review="rejected") == [] and pants[3] in ids(srv, label="hat") and counts()[0] == start[0] + 3
    # another process swaps two curation flags (no count changes, no lock): the datasets' revisions tell
    _other_process(srv.ws.root, f"with ws.session() as s:\n    s.get(Image, {pants[0]}).excluded = False\n"
                                f"    s.get(Image, {pants[4]}).excluded = True\n", url)
    ann.post(f"/api/images/{pants[5]}/annotations", json={"labels": ["hat"]})
    assert ids(srv, excluded="only") == [pants[4]] and counts()[0] == start[0] + 4


def test_annotator_stats_count_verdicts_time_and_replaced_labels(srv):
    a, b = ids(srv, label="pants")[:2]
    ann, bob, root = srv.client("ann"), srv.client("bob"), srv.client("root")
    ann.post(f"/api/images/{a}/annotations", json={"labels": ["hat"], "time_spent": 2.0})
    ann.post(f"/api/images/{a}/annotations", json={"labels": ["pants"], "time_spent": 4.0})  # she changed her mind
    mine = ann.post(f"/api/images/{b}/annotations", json={"labels": ["pants"], "time_spent": 9.0}).json()
    bob.post(f"/api/images/{a}/annotations", json={"labels": ["pants"], "time_spent": 1.0})
    bobs = bob.post(f"/api/images/{b}/annotations", json={"labels": ["shoes"], "time_spent": 1.0}).json()
    root.post(f"/api/annotations/{mine['id']}/review", json={"status": "accepted"})
    root.post(f"/api/annotations/{bobs['id']}/review", json={"status": "rejected"})
    who = {x["annotator"]: x for x in srv.client("view").get("/api/datasets/cloth/annotators").json()}
    # a rejected vote is nobody's: on b, ann shares with no one; on a, both chose pants
    assert who["ann"] == {
        "annotator": "ann", "images": 2, "labels": 3, "accepted": 1, "rejected": 0, "pending": 1,
        "accepted_suggestions": 0, "shared_images": 1, "time_spent_total": 15.0, "time_spent_median": 4.0,
        "agreement_with_others": 1.0}
    assert (who["bob"]["rejected"], who["bob"]["shared_images"], who["bob"]["agreement_with_others"]) == (1, 1, 1.0)
