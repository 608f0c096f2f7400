"""The "next to label" queue and automatic retraining after N new labels, through the API."""

import time

from fastapi.testclient import TestClient

from pixclass.server import create_app
from tests.integration.server_fixtures import make_server


def wait_job(client, job_id: str, timeout: float = 300) -> dict:
    end = time.time() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.time() > end:
            return job
        time.sleep(0.2)


def test_queue_orders_unlabeled_images_and_autotrain_retrains(tmp_path, photos4):
    srv = make_server(tmp_path / "ws", photos4)
    admin, ann = srv.client("root"), srv.client("ann")
    ids = ann.get("/api/datasets/cloth/images").json()["ids"]
    # make a pool of unlabeled images: import gave every image a label, so relabel via a fresh unlabeled dataset
    r = ann.get("/api/datasets/cloth/queue", params={"strategy": "margin", "n": 5})
    assert r.status_code == 200 and r.json()["image_ids"] == []  # everything is labeled already
    assert admin.put("/api/datasets/cloth/autotrain", json={"every": 2, "img_size": 64}).json()["every"] == 2
    assert ann.put("/api/datasets/cloth/autotrain", json={"every": 1}).status_code == 403
    first = ann.post(f"/api/images/{ids[0]}/annotations", json={"labels": ["hat"]}).json()
    assert first["retrain_job"] is None or isinstance(first["retrain_job"], str)
    second = ann.post(f"/api/images/{ids[1]}/annotations", json={"labels": ["hat"]}).json()
    job_id = first["retrain_job"] or second["retrain_job"]
    assert job_id, "two new labels with every=2 start a retraining job"
    job = wait_job(ann, job_id)
    assert job["status"] == "done", job.get("error")
    assert ann.get("/api/datasets/cloth/autotrain").json()["new_labels"] == 0
    # the rule is stored in the workspace: a restarted server keeps it, and null turns it off
    again = TestClient(create_app(srv.ws))
    again.headers["Authorization"] = f"Bearer {srv.tokens['root']}"
    assert again.get("/api/datasets/cloth/autotrain").json()["every"] == 2
    assert again.put("/api/datasets/cloth/autotrain", json={"every": None}).json()["every"] is None
    assert admin.get("/api/datasets/cloth/autotrain").json() == {"dataset": "cloth", "new_labels": 0, "every": None}

    # labels arriving from Label Studio's webhook count toward the rule too
    assert admin.put("/api/datasets/cloth/autotrain", json={"every": 1, "img_size": 64}).json()["every"] == 1
    event = {"action": "ANNOTATION_CREATED", "task": {"id": 5, "data": {"image": "x", "pixclass_image_id": ids[2]}},
             "annotation": {"id": 9, "completed_by": 3, "result": [{"from_name": "choice", "to_name": "image",
                                                                    "type": "choices", "value": {"choices": ["hat"]}}]}}
    r = ann.post("/webhook", json=event).json()
    assert r["stored"] == 1 and r["retrain_job"], r
    assert wait_job(ann, r["retrain_job"])["status"] == "done"
    assert ann.get("/api/datasets/cloth/autotrain").json()["new_labels"] == 0


def test_queue_on_unlabeled_folder(tmp_path, photos4):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(photos4.glob("*/*.jpg"))[::6]:  # images at the root of the source: imported unlabeled
        shutil.copy(f, flat / f"{f.parent.name}-{f.name}")
    srv = make_server(tmp_path / "ws", flat, name="new")
    c = srv.client("ann")
    for strategy in ("kcenter", "margin", "random"):
        q = c.get("/api/datasets/new/queue", params={"strategy": strategy, "n": 5}).json()
        assert len(q["image_ids"]) == 5 and len(set(q["image_ids"])) == 5
    assert c.get("/api/datasets/new/queue", params={"strategy": "bogus"}).status_code in (400, 422)


def test_grid_sorted_by_queue(tmp_path, photos4):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(photos4.glob("*/*.jpg"))[::8]:
        shutil.copy(f, flat / f"{f.parent.name}-{f.name}")
    srv = make_server(tmp_path / "ws", flat, name="new")
    c = srv.client("ann")
    q = c.get("/api/datasets/new/queue", params={"strategy": "kcenter", "n": 100}).json()["image_ids"]
    grid = c.get("/api/datasets/new/images", params={"sort": "queue:kcenter"}).json()
    assert grid["ids"] == q and grid["total"] == len(q) == 15
