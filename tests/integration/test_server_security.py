"""What a security review of the server found, each as the request that showed it: jobs an annotator can stop and
cannot pile up, reviewed Label Studio votes, files replaced since import, upload size checked before reading, ids
and bodies that used to be 500s, the basic-auth challenge, and what the Label Studio backend fetches."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from pixclass.errors import DataError
from pixclass.server import ServerSettings
from pixclass.server.mlbackend import _fetch
from pixclass.store.tables import Annotation, Image
from tests.integration.server_fixtures import PASSWORDS, basic, make_server, tiny_source


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A tiny two-class dataset ("cloth") and no model; uploads limited to 2 files of 50 kB."""
    src = tiny_source(tmp_path_factory.mktemp("tiny"))
    settings = ServerSettings(max_upload_bytes=50_000, max_upload_files=2, annotator_train_minutes=2)
    return make_server(tmp_path_factory.mktemp("ws"), src, settings=settings)


def _blocker(srv):
    """Occupy the single job worker until the returned event is set; returns (event, job)."""
    release = threading.Event()

    def work(progress):
        while not release.wait(0.02):
            progress("waiting", 0, 1)
        return {}

    return release, srv.app.state.jobs.submit("block", "root", {}, work)


def test_jobs_can_be_cancelled_by_their_owner_or_an_admin(srv):
    jobs = srv.app.state.jobs
    release, running = _blocker(srv)
    ran = []
    queued = jobs.submit("import", "ann", {}, lambda progress: ran.append(1) or {})
    c = srv.client("bob")
    r = c.delete(f"/api/jobs/{queued.id}")
    assert r.status_code == 403 and "ann's" in r.json()["detail"]
    assert srv.client("view").delete(f"/api/jobs/{queued.id}").status_code == 403
    r = srv.client("ann").delete(f"/api/jobs/{queued.id}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancelled_by"] == "ann"
    r = srv.client("root").delete(f"/api/jobs/{running.id}")  # running: it stops at its next progress report
    assert r.status_code == 200 and r.json()["cancelled_by"] == "root"
    assert jobs.wait(running.id, 10).status == "cancelled" and "Cancelled by root" in running.error
    release.set()
    assert jobs.wait(queued.id, 5).status == "cancelled" and not ran  # never started
    assert srv.client("root").delete(f"/api/jobs/{running.id}").status_code == 409
    assert srv.client("root").delete("/api/jobs/nope").status_code == 404


def test_an_annotator_cannot_hold_the_worker_for_hours_or_fill_its_queue(srv):
    jobs = srv.app.state.jobs
    release, blocker = _blocker(srv)
    try:
        c = srv.client("ann")
        body = {"dataset": "cloth", "mode": "finetune", "epochs": 1000, "img_size": 64}
        first = c.post("/api/train", json=body).json()
        assert first["params"]["time_budget"] == 120  # annotator_train_minutes=2
        second = c.post("/api/train", json={**body, "epochs": 999}).json()
        assert c.post("/api/train", json=body).json()["already"] is True  # the same job: no new one
        third = c.post("/api/train", json={**body, "epochs": 998})
        assert third.status_code == 429 and "Jobs tab" in third.json()["detail"]
        admin = srv.client("root").post("/api/train", json={**body, "epochs": 997}).json()
        assert admin["params"]["time_budget"] is None  # admins decide for themselves
        url = "/api/datasets/cloth/prelabel"
        pre = [c.post(url, json={}).json(), c.post(url, json={"run_id": 5}).json()]
        assert c.post(url, json={}).json() == {**pre[0], "already": True}  # a second click: the same job
        assert c.post(url, json={"run_id": 6}).status_code == 429
        pre.append(srv.client("root").post(url, json={"run_id": 6}).json())
        for j in (first, second, admin, *pre):
            assert srv.client("root").delete(f"/api/jobs/{j['id']}").json()["status"] == "cancelled"
    finally:
        jobs.cancel(blocker.id, "test")
        release.set()


def test_an_annotator_cannot_delete_reviewed_label_studio_votes_through_the_webhook(srv):
    ann = {**basic("ann", PASSWORDS["ann"])}
    with srv.ws.session() as s:
        image_id = s.scalars(select(Image.id).order_by(Image.id)).first()
    result = [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": ["shoes"]}}]
    for n in (7001, 7002):
        event = {"action": "ANNOTATION_CREATED", "task": {"id": n, "data": {"pixclass_image_id": image_id}},
                 "annotation": {"id": n, "completed_by": {"email": f"u{n}@example.org"}, "result": result}}
        assert srv.client().post("/webhook", json=event, headers=ann).json()["stored"] == 1
    with srv.ws.session() as s:
        reviewed = s.scalar(select(Annotation).where(Annotation.external_id == "label-studio:7001"))
    assert srv.client("root").post(f"/api/annotations/{reviewed.id}/review", json={"status": "accepted"}).is_success
    gone = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 7001}, {"id": 7002}]}
    r = srv.client().post("/webhook", json=gone, headers=ann).json()
    assert r["deleted"] == 1 and r["kept"] == 1 and "only an admin" in r["reason"]
    r = srv.client().post("/webhook", json=gone, headers=basic("root", PASSWORDS["root"])).json()
    assert r["deleted"] == 1 and "kept" not in r
    # a cross-site form can post text/plain, never JSON: the Label Studio routes take JSON only
    r = srv.client().post("/webhook", content=b'{"action": "ANNOTATIONS_DELETED"}', headers={
        **ann, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_a_file_replaced_since_import_is_not_served(srv, tmp_path):
    c = srv.client("view")
    with srv.ws.session() as s:
        im = s.scalars(select(Image).order_by(Image.id.desc())).first()
        image_id, path = im.id, im.path
    ok = c.get(f"/api/images/{image_id}/file")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert ok.headers["x-content-type-options"] == "nosniff"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    original = open(path, "rb").read()
    try:
        import os

        os.replace(path, path + ".bak")
        os.symlink(secret, path)
        r = c.get(f"/api/images/{image_id}/file")
        assert r.status_code == 409 and b"root:x" not in r.content and "no longer an image" in r.json()["detail"]
    finally:
        os.unlink(path)
        os.replace(path + ".bak", path)
    assert open(path, "rb").read() == original


def test_an_image_browsers_do_not_show_is_served_as_a_jpeg_never_by_its_name(srv):
    """An upload named .html that Pillow reads as an image (here a TIFF, with a script after it) must never reach a
    browser as HTML: formats browsers do not show are served as a JPEG rendering, and every file answer is sandboxed."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30), (10, 200, 10)).save(buf, format="TIFF")
    page = buf.getvalue() + b"<script>alert(document.cookie)</script>"
    up = srv.client("ann").post("/api/datasets/cloth/upload", files={"files": ("page.html", page, "text/html")})
    [image_id] = up.json()["added"]
    r = srv.client("view").get(f"/api/images/{image_id}/file")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"
    assert r.headers["content-security-policy"] == "sandbox" and b"<script>" not in r.content
    assert PILImage.open(io.BytesIO(r.content)).size == (40, 30)


def test_upload_size_is_checked_before_the_body_is_read_and_the_dataset_first(srv):
    c = srv.client("ann")
    # 2 files x 50 kB + 1 MB of fields at most: a longer body is refused on its Content-Length alone
    r = c.post("/api/datasets/cloth/upload", content=b"x" * (1_200_000), headers={
        "Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = c.post("/api/datasets/nope/upload", files={"files": ("a.png", b"x")})
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    assert not (srv.ws.root / "uploads" / "nope").exists()


def test_ids_past_64_bits_bodies_not_utf8_and_nul_bytes_are_client_errors(srv):
    c = srv.client("root")
    assert c.get(f"/api/images/{2**70}/file").status_code == 404
    assert c.delete(f"/api/annotations/{2**70}").status_code == 404
    r = c.post("/api/predict", json={"image_ids": [1]}, params={"artifact": "a\x00b"})
    assert r.status_code == 400 and "No artifact" in r.json()["detail"]
    r = srv.client().post("/api/auth/login", content=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422
    r = srv.client().post("/api/auth/login", json={"name": "root", "password": "p" * 5000})
    assert r.status_code == 422 and "p" * 100 not in r.text  # the password is not echoed back


def test_basic_auth_challenge_only_on_the_label_studio_routes(srv):
    """A challenge makes a browser ask for a password, then send it with other sites' requests too."""
    plain = srv.client()
    assert "www-authenticate" not in plain.get("/api/datasets").headers
    assert plain.get("/api/datasets").status_code == 401
    assert plain.post("/predict", json={"tasks": []}).headers["www-authenticate"].startswith("Basic")


def test_label_studio_fetches_only_its_media_files():
    base = "http://127.0.0.1:9"  # nothing listens: a refused request never reaches the network
    for url in ("/api/users/1", "http://127.0.0.1:9/api/projects/", "/data/local-files/?d=../../etc/passwd",
                "/data/upload/../../api/users/1", "/data/local-files/?d=a/%2e%2e/%2e%2e/etc/passwd"):
        with pytest.raises(DataError, match="one of Label Studio's files"):
            _fetch(url, base, "key", {})
    for url, at in (("/data/upload/1/a.jpg", base), ("/data/upload/1/a.jpg", f"{base}/ls")):
        with pytest.raises(DataError, match="Cannot download"):  # allowed: tried, and nothing answers
            _fetch(url, at, "key", {})
    with pytest.raises(DataError, match="one of Label Studio's files"):  # Label Studio under a path prefix
        _fetch("/api/users/1", f"{base}/ls", "key", {})


def test_bulk_time_spent_is_at_most_a_day_per_image(srv):
    with srv.ws.session() as s:
        two = list(s.scalars(select(Image.id).order_by(Image.id).limit(2)))
    c = srv.client("ann")
    r = c.post("/api/annotations/bulk", json={"image_ids": two, "labels": ["hat"], "time_spent": 1e12})
    assert r.status_code == 422 and "more than a day per image" in r.text
    r = c.post("/api/annotations/bulk", json={"image_ids": two, "labels": ["hat"], "time_spent": 3.0})
    assert r.status_code == 200
    with srv.ws.session() as s:
        assert [a.time_spent for a in s.scalars(select(Annotation).where(Annotation.id.in_(
            r.json()["annotation_ids"])))] == [1.5, 1.5]


def test_writes_from_another_site_are_refused_whatever_the_credentials(srv):
    """A browser holding basic-auth credentials sends them with other sites' requests too; it also says where the
    request comes from. Scripts and Label Studio send neither header and are not affected."""
    ann = basic("ann", PASSWORDS["ann"])
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}]}
    for where in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        r = srv.client().post("/webhook", json=body, headers={**ann, **where})
        assert r.status_code == 403 and "another site" in r.json()["detail"]
        assert srv.client("ann").post("/api/datasets/cloth/upload", headers=where,
                                      files={"files": ("a.png", b"x")}).status_code == 403
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert srv.client().post("/webhook", json=body, headers={**ann, **same}).status_code == 201
    assert srv.client().post("/webhook", json=body, headers=ann).status_code == 201  # a script
    assert srv.client("ann").get("/api/datasets", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
