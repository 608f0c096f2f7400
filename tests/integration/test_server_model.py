"""Model in the loop over HTTP: training jobs with progress, suggestions, accept-above-threshold, REST prediction,
and the Label Studio ML-backend routes against a stand-in Label Studio on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import delete, func, select

from pixclass.server import ServerSettings
from pixclass.store import records
from pixclass.store.tables import Annotation, Image, Prediction
from tests.integration.server_fixtures import PASSWORDS, basic, make_server

LS_KEY = "ls-secret-key"
# Label Studio 1.22+ personal access token: a JWT refresh token, exchanged at /api/token/refresh for an access token
LS_PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
LS_ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2ln"  # expires in 2100
LABEL_CONFIG = ('<View><Image name="img" value="$photo"/><Choices name="garment" toName="img">'
                '<Choice value="hat"/><Choice value="pants"/></Choices></View>')


class FakeLabelStudio(http.server.BaseHTTPRequestHandler):
    """Serves /data/upload/<name> from ``files`` only to requests carrying `Authorization: Token LS_KEY` (a legacy
    token) or `Bearer LS_ACCESS` (the access token /api/token/refresh gives for the personal token LS_PAT)."""

    files: dict[str, bytes] = {}
    seen_auth: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server naming
        self.seen_auth.append(self.headers.get("Authorization", ""))
        data = self.files.get(self.path)
        if self.headers.get("Authorization") not in (f"Token {LS_KEY}", f"Bearer {LS_ACCESS}") or data is None:
            self.send_response(401 if data is not None else 404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        ok = self.path == "/api/token/refresh" and body.get("refresh") == LS_PAT
        out = json.dumps({"access": LS_ACCESS} if ok else {"detail": "Token is invalid"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def label_studio():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, photos4, label_studio):
    settings = ServerSettings(label_studio_url=label_studio, label_studio_api_key=LS_KEY)
    return make_server(tmp_path_factory.mktemp("ws"), photos4, settings=settings)


def wait_job(client, job_id: str, timeout: float = 300) -> dict:
    stages = set()
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        stages.add(job["stage"])
        if job["status"] in ("done", "failed"):
            job["stages_seen"] = stages
            return job
        time.sleep(0.1)
    raise TimeoutError(job_id)


def test_ml_backend_before_any_model(srv):
    ls = srv.client()
    auth = basic("ann", PASSWORDS["ann"])
    t0 = time.time()
    assert ls.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG}, headers=auth).json() == \
        {"model_version": "none"}
    assert time.time() - t0 < 3
    r = ls.post("/predict", json={"tasks": [{"id": 1, "data": {"photo": "/data/upload/1/a.jpg"}}],
                                  "label_config": LABEL_CONFIG}, headers=auth)
    assert r.status_code == 200 and r.json() == {"results": [], "errors": []}
    assert srv.client("ann").post("/api/predict", files={"file": ("a.jpg", b"x")}).status_code == 409


@pytest.fixture(scope="module")
def trained(srv):
    """Label a few images by hand first, then train (linear, 64 px) through the API."""
    c = srv.client("ann")
    hats = c.get("/api/datasets/cloth/images", params={"label": "hat"}).json()["ids"]
    assert c.post(f"/api/images/{hats[0]}/annotations", json={"labels": ["pants"]}).status_code == 200
    job = c.post("/api/train", json={"dataset": "cloth", "mode": "linear", "img_size": 64}).json()
    assert job["status"] in ("queued", "running")
    again = srv.client("root").post("/api/train", json={"dataset": "cloth", "mode": "linear", "img_size": 64}).json()
    assert again["id"] == job["id"] and again["already"]  # a second click (or a colleague's): one job, not two
    done = wait_job(c, job["id"])
    assert done["status"] == "done", done["error"]
    return done | {"relabeled_hat": hats[0]}


def test_train_job_progress_and_stored_suggestions(srv, trained):
    assert {"decode", "predict"} <= trained["stages_seen"] or trained["total"] > 0
    assert trained["result"]["prelabel"]["predicted"] == 120
    assert trained["result"]["metrics"]["val_accuracy"] > 0.5
    with srv.ws.session() as s:
        preds = list(s.scalars(select(Prediction)))
        assert len(preds) == 120 and all(len(p.probs) == 4 for p in preds)
        assert s.scalar(select(Annotation).where(Annotation.source == "model")) is None  # suggestions live apart
    listed = srv.client("view").get("/api/datasets/cloth/images", params={"predicted": "shoes", "min_conf": 0.5}).json()
    assert listed["total"] > 10
    assert all(it["prediction"]["label"] == "shoes" and it["prediction"]["score"] >= 0.5 for it in listed["items"])
    correct = sum("shoes" in it["labels"] for it in listed["items"])
    assert correct / len(listed["items"]) > 0.7
    detail = srv.client("view").get(f"/api/images/{listed['ids'][0]}").json()
    assert len(detail["top"]) == 4 and detail["top"][0]["label"] == "shoes"
    jobs = srv.client("view").get("/api/jobs").json()
    assert jobs[0]["kind"] == "train" and jobs[0]["user"] == "ann"


def test_accept_suggestions_above_threshold_never_overwrites(srv, trained):
    c = srv.client("bob")
    with srv.ws.session() as s:
        hat_path = s.get(Image, trained["relabeled_hat"]).path
    # a fresh unlabeled copy of a real photo, so that there is something to accept
    buf = io.BytesIO()
    PILImage.open(hat_path).transpose(PILImage.FLIP_LEFT_RIGHT).save(buf, "JPEG")
    up = c.post("/api/datasets/cloth/upload", files={"files": ("flip.jpg", buf.getvalue(), "image/jpeg")}).json()
    new_id = up["added"][0]
    # a dataset with a model: the upload's own job stores suggestions for the new image only
    assert wait_job(c, up["prelabel_job"])["result"]["predicted"] == 1
    assert c.get(f"/api/images/{new_id}").json()["prediction"]["run_id"] == trained["result"]["run_id"]
    job = c.post("/api/datasets/cloth/prelabel", json={}).json()
    assert wait_job(c, job["id"])["result"]["predicted"] == 121
    dry = c.post("/api/datasets/cloth/accept-suggestions", json={"threshold": 0.0, "dry_run": True}).json()
    assert dry["accepted"] == 1 and dry["annotation_ids"] == []
    with srv.ws.session() as s:
        assert s.scalar(select(Annotation).where(Annotation.image_id == new_id)) is None  # a dry run stores nothing
    new_labels = c.get("/api/datasets/cloth/autotrain").json()["new_labels"]
    r = c.post("/api/datasets/cloth/accept-suggestions", json={"threshold": 0.0}).json()
    assert c.get("/api/datasets/cloth/autotrain").json()["new_labels"] == new_labels  # the model's own labels
    assert {k: r[k] for k in ("accepted", "skipped_labeled", "below_threshold")} == \
        {"accepted": 1, "skipped_labeled": 120, "below_threshold": 0}
    listed = lambda origin: c.get("/api/datasets/cloth/images", params={"origin": origin}).json()  # noqa: E731
    assert listed("accepted")["ids"] == [new_id] and listed("accepted")["items"][0]["accepted"] is True
    assert new_id not in listed("manual")["ids"] and listed("manual")["total"] == 120
    with srv.ws.session() as s:
        accepted = s.scalar(select(Annotation).where(Annotation.image_id == new_id))
        assert accepted.source == "human" and accepted.author == "bob" and accepted.from_run is not None
        pred = s.scalar(select(Prediction).where(Prediction.image_id == new_id))
        assert accepted.labels == pred.labels
        relabeled = list(s.scalars(select(Annotation).where(Annotation.image_id == trained["relabeled_hat"])))
    assert [a.labels for a in relabeled] == [["hat"], ["pants"]]  # the human label stayed, nothing added
    high = c.post("/api/datasets/cloth/accept-suggestions", json={"threshold": 1.0}).json()
    assert high["accepted"] == 0
    assert c.post("/api/annotations/undo", json={"ids": r["annotation_ids"]}).json() == {"deleted": 1}
    assert listed("accepted")["total"] == 0 and new_id in listed("")["ids"]
    c.post("/api/datasets/cloth/accept-suggestions", json={"threshold": 0.0})  # as before, for the tests below


def test_rest_predict_upload_ids_batch_and_errors(srv, trained, photos4):
    c = srv.client("view")
    photo = sorted((photos4 / "shoes").glob("*.jpg"))[0]
    r = c.post("/api/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}, params={"k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    p = body["predictions"][0]
    assert p["label"] == "shoes" and len(p["top"]) == 3 and body["run_id"] is not None
    assert abs(sum(t["score"] for t in c.post("/api/predict", files={"file": ("a.jpg", photo.read_bytes())},
                                              params={"k": 4}).json()["predictions"][0]["top"]) - 1) < 1e-3
    bad = c.post("/api/predict", files={"file": ("broken.jpg", b"\xff\xd8\xff garbage", "image/jpeg")})
    assert bad.status_code == 400 and "broken.jpg" in bad.json()["detail"]
    ids = c.get("/api/datasets/cloth/images", params={"label": "hat"}).json()["ids"][1:4]
    r = c.post("/api/predict", json={"image_ids": ids})
    assert [x["image_id"] for x in r.json()["predictions"]] == ids
    assert sum(x["label"] == "hat" for x in r.json()["predictions"]) >= 2
    assert c.post("/api/predict", json={"image_ids": [10**6]}).status_code == 404
    for body, why in (({"ids": [1]}, "image_ids: Field required"), ({"image_ids": ["x"]}, "image_ids.0: Input should"),
                      ([1, 2], "body: Input should be a valid dictionary")):
        r = c.post("/api/predict", json=body)
        assert r.status_code == 422 and why in r.json()["detail"] and "pydantic" not in r.json()["detail"], r.text
    r = c.post("/api/predict", content=b"{oops", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]
    batch = c.post("/api/predict/batch", files=[("files", ("good.jpg", photo.read_bytes(), "image/jpeg")),
                                                ("files", ("bad.jpg", b"nope", "image/jpeg"))]).json()
    assert batch["predictions"][0]["label"] == "shoes" and "error" in batch["predictions"][1]
    assert c.post("/api/predict", params={"run_id": 999}, files={"file": ("a.jpg", b"x")}).status_code == 400


def test_rest_predict_bad_files_say_why_once_without_reprs(srv, trained, photos4):
    c = srv.client("view")
    data = min((photos4 / "shoes").glob("*.jpg")).read_bytes()  # predicted "shoes" above
    bad = {"empty.jpg": (b"", "empty.jpg: empty file (0 bytes)."),
           "notes.txt": (b"this is not an image",
                         "notes.txt: not an image file Pillow can read (wrong extension or not an image)."),
           "half.jpg": (data[: len(data) // 2], "half.jpg: corrupt image data: truncated file (")}
    for name, (content, reason) in bad.items():
        r = c.post("/api/predict", files={"file": (name, content, "image/jpeg")})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert detail.startswith(reason) and detail.count(name) == 1 and "<_io" not in detail, detail
    r = c.post("/api/predict/batch", files=[("files", (n, content, "image/jpeg")) for n, (content, _) in bad.items()]
               + [("files", ("good.jpg", data, "image/jpeg"))])
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["name"] for p in preds] == [*bad, "good.jpg"] and preds[-1]["label"] == "shoes"
    for p, (_, reason) in zip(preds, bad.values()):
        assert p["error"].startswith(reason) and p["error"].count(p["name"]) == 1 and "<_io" not in p["error"]
    assert preds[0]["error"] == "empty.jpg: empty file (0 bytes)."


def test_label_studio_predict_downloads_with_token_and_formats(srv, trained, photos4):
    photo = sorted((photos4 / "hat").glob("*.jpg"))[3]
    FakeLabelStudio.files = {"/data/upload/7/hat.jpg": photo.read_bytes(), "/data/upload/7/empty.jpg": b""}
    auth = basic("ann", PASSWORDS["ann"])
    ls = srv.client()
    setup = ls.post("/setup", json={"project": "7.1700000000", "schema": LABEL_CONFIG, "hostname": "x"},
                    headers=auth).json()
    assert setup["model_version"].startswith("pixclass-run-")
    tasks = [{"id": 1, "data": {"photo": "/data/upload/7/hat.jpg"}},
             {"id": 2, "data": {"photo": "/data/upload/7/missing.jpg"}},
             {"id": 3, "data": {"photo": "http://elsewhere.example/x.jpg"}},
             {"id": 4, "data": {"photo": "/data/upload/7/empty.jpg"}}]
    r = ls.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG, "project": "7.1700000000",
                                  "params": {"context": None}}, headers=auth)
    assert r.status_code == 200
    results, errors = r.json()["results"], {e["task"]: e["error"] for e in r.json()["errors"]}
    assert len(results) == 4
    first = results[0]
    assert first["model_version"] == setup["model_version"] and 0 < first["score"] <= 1
    item = first["result"][0]
    assert (item["from_name"], item["to_name"], item["type"]) == ("garment", "img", "choices")
    assert item["value"] == {"choices": ["hat"]}
    assert "error" not in first
    # a task whose image cannot be had gets no prediction (Label Studio stores none and asks again next time), and
    # its reason is in `errors`
    assert results[1:] == [[], [], []] and set(errors) == {2, 3, 4}
    assert errors[2] == (f"{srv.app.state.settings.label_studio_url}/data/upload/7/missing.jpg: "
                         f"Label Studio has no such file (404); the task's image may have been deleted "
                         f"or moved.")  # not blamed on the key
    assert errors[3].startswith("Not fetching http://elsewhere.example/x.jpg: only images served by ")
    assert errors[4] == "/data/upload/7/empty.jpg: empty file (0 bytes)."
    assert f"Token {LS_KEY}" in FakeLabelStudio.seen_auth


def test_label_studio_webhook_stores_annotation_and_can_train(srv, trained):
    image_id = srv.client("view").get("/api/datasets/cloth/images", params={"label": "pants"}).json()["ids"][2]
    auth = basic("ann", PASSWORDS["ann"])
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 7, "label_config": LABEL_CONFIG},
             "task": {"id": 5, "data": {"photo": "/data/upload/7/p.jpg", "pixclass_image_id": image_id}},
             "annotation": {"id": 9, "completed_by": 3, "lead_time": 4.2,
                            "result": [{"from_name": "garment", "to_name": "img", "type": "choices",
                                        "value": {"choices": ["hat"]}}]}}
    r = srv.client().post("/webhook", json=event, headers=auth)
    assert r.status_code == 201 and r.json()["stored"] == 1
    with srv.ws.session() as s:
        a = s.scalars(select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.id)).all()[-1]
    assert (a.labels, a.source, a.author, a.time_spent) == (["hat"], "human", "label-studio:3", 4.2)
    assert srv.client().post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=auth).status_code == 200
    assert srv.client().post("/webhook", json=event, headers=basic("view", PASSWORDS["view"])).status_code == 403


def test_onnx_export_is_used_when_present(srv, trained):
    from pixclass.export.onnx import export_run

    run_dir = Path(trained["result"]["run"])
    export_run(run_dir, run_dir / "export")
    srv.app.state.models.forget()
    r = srv.client("view").post("/api/predict", json={"image_ids": [1]})
    assert r.json()["backend"] == "onnx"


def test_admin_pins_the_run_that_serves(srv, trained):
    """A pinned run keeps answering (suggestions, /api/predict, the Label Studio backend, the queue, the export) while
    newer runs are trained; a run without stored suggestions gets them by a job; unpinning follows the newest."""
    first = trained["result"]["run_id"]
    admin, ann = srv.client("root"), srv.client("ann")
    job = ann.post("/api/train", json={"dataset": "cloth", "mode": "linear", "img_size": 64, "linear_c": 0.01}).json()
    newer = wait_job(ann, job["id"])["result"]["run_id"]
    assert newer > first
    assert ann.put("/api/datasets/cloth/serving-run", json={"run_id": first}).status_code == 403  # admins only
    missing = admin.put("/api/datasets/cloth/serving-run", json={"run_id": 98765})
    assert missing.status_code == 404 and "98765" in missing.json()["detail"]

    def answering() -> dict:
        """The run behind each route that answers with a model."""
        info = ann.get("/api/datasets/cloth").json()
        listed = ann.get("/api/datasets/cloth/images", params={"limit": 5}).json()["items"]
        predicted = ann.post("/api/predict", json={"image_ids": [listed[0]["id"]]}).json()
        setup = srv.client().post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG},
                                  headers=basic("ann", PASSWORDS["ann"])).json()
        tasks = ann.get("/api/datasets/cloth/export/labelstudio").json()
        serving = [r["id"] for r in ann.get("/api/runs", params={"dataset": "cloth"}).json() if r["serving"]]
        return {"pinned": info["pinned_run"], "suggestions": {it["prediction"]["run_id"] for it in listed},
                "predict": predicted["run_id"], "setup": setup["model_version"], "runs": serving,
                "export": {p["model_version"] for t in tasks for p in t.get("predictions", [])}}

    assert answering() == {"pinned": None, "suggestions": {newer}, "predict": newer, "setup": f"pixclass-run-{newer}",
                           "runs": [newer], "export": {f"pixclass-run-{newer}"}}
    r = admin.put("/api/datasets/cloth/serving-run", json={"run_id": first}).json()
    assert r == {"dataset": "cloth", "pinned_run": first, "serving_run": first, "prelabel_job": None,
                 "missing_suggestions": 0}
    assert answering() == {"pinned": first, "suggestions": {first}, "predict": first, "setup": f"pixclass-run-{first}",
                           "runs": [first], "export": {f"pixclass-run-{first}"}}
    # training goes on while pinned: the pinned run still serves
    job = ann.post("/api/train", json={"dataset": "cloth", "mode": "linear", "img_size": 64}).json()
    newest = wait_job(ann, job["id"])["result"]["run_id"]
    assert answering()["suggestions"] == {first} and ann.get("/api/datasets/cloth").json()["latest_run"] == newest

    with srv.ws.session() as s:  # images a run has no suggestion for (uploaded since, say) get one when pinned
        gone = list(s.scalars(select(Prediction.image_id).where(Prediction.run_id == newer).limit(3)))
        s.execute(delete(Prediction).where(Prediction.run_id == newer, Prediction.image_id.in_(gone)))
    r = admin.put("/api/datasets/cloth/serving-run", json={"run_id": newer}).json()
    assert r["serving_run"] == newer and r["prelabel_job"] and r["missing_suggestions"] == 3
    assert wait_job(admin, r["prelabel_job"])["result"]["predicted"] == 3
    with srv.ws.session() as s:
        assert s.scalar(select(func.count(Prediction.id)).where(Prediction.run_id == newer)) == 121
    assert answering()["suggestions"] == {newer}
    r = admin.put("/api/datasets/cloth/serving-run", json={"run_id": None}).json()
    assert r["pinned_run"] is None and r["serving_run"] == newest
    assert answering()["predict"] == newest


def test_models_answer_for_the_right_dataset_and_suggestions_are_checked(srv, trained, photos4):
    """Image ids are predicted by their own dataset's run; Label Studio's "Start training" trains the dataset that was
    labeled last, not the newest one; a label sent as an accepted suggestion must be the suggestion."""
    admin, ann = srv.client("root"), srv.client("ann")
    assert admin.post("/api/datasets", json={"name": "other", "classes": ["a", "b"]}).status_code == 200
    up = admin.post("/api/datasets/other/upload",
                    files={"files": ("x.jpg", sorted((photos4 / "hat").glob("*.jpg"))[0].read_bytes())}).json()
    r = ann.post("/api/predict", json={"image_ids": up["added"]})
    assert r.status_code == 409 and "'other'" in r.json()["detail"]  # never trained: not another dataset's model
    cloth = ann.get("/api/datasets/cloth/images", params={"limit": 1}).json()["ids"][0]
    assert ann.post("/api/predict", json={"image_ids": [cloth]}).json()["run_id"] is not None
    both = ann.post("/api/predict", json={"image_ids": [cloth, up["added"][0]]})
    assert both.status_code == 400 and "several datasets" in both.json()["detail"]

    job = srv.client().post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}},
                            headers=basic("ann", PASSWORDS["ann"])).json()["job"]
    assert ann.get(f"/api/jobs/{job}").json()["params"]["dataset"] == "cloth"  # "other" is newer, but unlabeled
    wait_job(ann, job)

    image = ann.get(f"/api/images/{cloth}").json()
    other = next(c for c in ("hat", "pants", "shoes", "t-shirt") if c != image["top"][0]["label"])
    mine = ann.post(f"/api/images/{cloth}/annotations", json={"labels": [other], "accepted_suggestion": True}).json()
    taken = ann.post(f"/api/images/{cloth}/annotations", json={"labels": [image["top"][0]["label"]],
                                                                "accepted_suggestion": True}).json()
    assert mine["from_run"] is None and taken["from_run"] == image["prediction"]["run_id"]


def test_label_studio_personal_access_token_is_exchanged_for_an_access_token(srv, trained, photos4):
    """Label Studio 1.22+ hands out personal access tokens, which only work once exchanged (as its SDK does)."""
    FakeLabelStudio.files = {"/data/upload/8/hat.jpg": sorted((photos4 / "hat").glob("*.jpg"))[4].read_bytes()}
    before = srv.app.state.settings
    task = {"tasks": [{"id": 1, "data": {"photo": "/data/upload/8/hat.jpg"}}], "label_config": LABEL_CONFIG}
    try:
        srv.app.state.settings = dataclasses.replace(before, label_studio_api_key=LS_PAT)
        r = srv.client().post("/predict", json=task, headers=basic("ann", PASSWORDS["ann"])).json()
        assert r["errors"] == [] and r["results"][0]["result"][0]["value"] == {"choices": ["hat"]}
        assert FakeLabelStudio.seen_auth[-1] == f"Bearer {LS_ACCESS}"
        srv.app.state.settings = dataclasses.replace(before, label_studio_api_key=LS_PAT[:-2] + "xx")
        r = srv.client().post("/predict", json=task, headers=basic("ann", PASSWORDS["ann"])).json()
        assert r["results"] == [[]] and "did not accept LABEL_STUDIO_API_KEY as a personal access token" in \
            r["errors"][0]["error"]
    finally:
        srv.app.state.settings = before


def test_label_studio_projects_get_their_dataset_and_only_their_choices(srv, trained, photos4):
    """A config whose choices are the dataset's classes is served by that dataset, through the control that offers
    them (not a second one, here an image-quality flag); a model answer the config does not offer is never sent;
    a bare file name is not taken for a registered image; an event sent twice is stored once."""
    auth = basic("ann", PASSWORDS["ann"])
    quality = '<Choices name="quality" toName="img"><Choice value="ok"/><Choice value="blurry"/></Choices>'
    classes = "".join(f'<Choice value="{c}"/>' for c in ("hat", "pants", "shoes", "t-shirt"))
    config = (f'<View><Image name="img" value="$photo"/>{quality}<Choices name="garment" toName="img">{classes}'
              f'</Choices></View>')
    with srv.ws.session() as s:  # a shoe photo the model calls shoes
        rows = s.execute(select(Image, Prediction).join(Prediction, Prediction.image_id == Image.id).order_by(Image.id))
        shoe = next(im for im, p in rows
                    if Path(im.path).parent.name == "shoes" and p.labels == ["shoes"])
        near = f"{Path(shoe.path).parent.name}/{Path(shoe.path).name}"  # class folder and file: one image
    tasks = [{"id": 1, "data": {"photo": f"/data/local-files/?d={near}"}},
             {"id": 2, "data": {"photo": f"/data/local-files/?d={Path(shoe.path).name}"}}]
    r = srv.client().post("/predict", json={"tasks": tasks, "label_config": config}, headers=auth).json()
    [item] = r["results"][0]["result"]
    assert item["from_name"] == "garment" and item["value"] == {"choices": ["shoes"]}
    assert r["results"][1] == [] and "404" in r["errors"][0]["error"]  # downloaded, not guessed from the name

    # a newer dataset with the same classes (say, imported from a Label Studio export) has no model: the project
    # stays with the trained one, as it does when the config offers one more choice ("other")
    classes_list = ["hat", "pants", "shoes", "t-shirt"]
    assert srv.client("root").post("/api/datasets", json={"name": "copy", "classes": classes_list}).status_code == 200
    other = config.replace('<Choice value="t-shirt"/>', '<Choice value="t-shirt"/><Choice value="other"/>')
    for cfg in (config, other):
        r = srv.client().post("/predict", json={"tasks": tasks[:1], "label_config": cfg}, headers=auth).json()
        assert r["results"][0]["result"][0]["value"] == {"choices": ["shoes"]}, r

    only_hats = '<View><Image name="img" value="$photo"/><Choices name="c" toName="img"><Choice value="hat"/>' \
                '</Choices></View>'
    r = srv.client().post("/predict", json={"tasks": tasks[:1], "label_config": only_hats}, headers=auth).json()
    assert r["results"] == [[]] and "are not choices of the labeling config" in r["errors"][0]["error"]

    event = {"action": "ANNOTATION_CREATED", "project": {"id": 9, "label_config": config},
             "task": {"id": 1, "data": tasks[0]["data"]},
             "annotation": {"id": 31, "completed_by": 5, "result": [
                 {"from_name": "quality", "to_name": "img", "type": "choices", "value": {"choices": ["blurry"]}},
                 {"from_name": "garment", "to_name": "img", "type": "choices", "value": {"choices": ["pants"]}}]}}
    FakeLabelStudio.files = {"/api/users/5": b'{"id": 5, "email": "ann@example.com"}'}  # webhooks send the id
    first = srv.client().post("/webhook", json=event, headers=auth).json()
    again = srv.client().post("/webhook", json=event, headers=auth).json()
    assert (first["stored"], first["image_id"]) == (1, shoe.id) and (again["stored"], again["reason"]) == \
        (0, "already stored")
    with srv.ws.session() as s:
        mine = s.scalars(select(Annotation).where(Annotation.author == "label-studio:ann@example.com")).all()
    assert [(a.image_id, a.labels) for a in mine] == [(shoe.id, ["pants"])]

    # an image that lives only in Label Studio is downloaded into the project's dataset, once, with its label
    buf = io.BytesIO()  # a photo pixclass does not have: a mirrored hat
    PILImage.open(sorted((photos4 / "hat").glob("*.jpg"))[-1]).transpose(PILImage.FLIP_LEFT_RIGHT).save(buf, "JPEG")
    FakeLabelStudio.files = {"/data/upload/9/ls-hat.jpg": buf.getvalue(), "/data/upload/9/broken.jpg": b"not an image"}
    hosted = {**event, "task": {"id": 77, "data": {"photo": "/data/upload/9/ls-hat.jpg"}},
              "annotation": {"id": 40, "completed_by": 6, "result": event["annotation"]["result"][1:]}}
    first = srv.client().post("/webhook", json=hosted, headers=auth).json()
    hosted["annotation"] = {**hosted["annotation"], "id": 41, "completed_by": 7}
    second = srv.client().post("/webhook", json=hosted, headers=auth).json()
    assert first["stored"] == second["stored"] == 1 and first["image_id"] == second["image_id"]
    with srv.ws.session() as s:
        im = s.get(Image, first["image_id"])
        assert "uploads" in im.path and im.path.endswith("ls-hat.jpg")
        assert records.get_dataset(s, "cloth").id == im.dataset_id
    hosted["task"] = {"id": 78, "data": {"photo": "/data/upload/9/broken.jpg"}}
    r = srv.client().post("/webhook", json=hosted, headers=auth).json()
    assert r["stored"] == 0 and "broken.jpg" in r["reason"] and "not an image" in r["reason"]

    # several at once ("create annotations from predictions"), and deletions in Label Studio delete their votes
    with srv.ws.session() as s:
        two = [im.id for im in s.scalars(select(Image).order_by(Image.id).limit(2))]
    bulk = {"action": "ANNOTATIONS_CREATED", "project": event["project"],
            "task": [{"id": 90 + i, "data": {"pixclass_image_id": i}} for i in two],
            "annotation": [{"id": 50 + n, "completed_by": 8, "result": event["annotation"]["result"][1:]}
                           for n in range(2)]}
    r = srv.client().post("/webhook", json=bulk, headers=auth).json()
    assert r["stored"] == 2 and r["image_ids"] == two
    r = srv.client().post("/webhook", json={"action": "ANNOTATIONS_DELETED", "project": event["project"],
                                            "annotations": [{"id": 31}, {"id": 50}]}, headers=auth).json()
    assert r["deleted"] == 2
    with srv.ws.session() as s:
        left = s.scalars(select(Annotation).where(Annotation.author.in_(["label-studio:ann@example.com",
                                                                         "label-studio:8"]))).all()
    assert [(a.image_id, a.external_id) for a in left] == [(two[1], "label-studio:51")]
