"""Accounts changed from outside the server take effect at once; adding a user never silently replaces one;
dataset names that would break their URLs are refused."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pixclass.cli.main import app
from pixclass.errors import ConfigError
from pixclass.store import Workspace, users
from pixclass.store.tables import Dataset
from tests.integration.server_fixtures import PASSWORDS, basic, make_server

runner = CliRunner()
CSRF = {"X-Requested-With": "x"}


@pytest.fixture()
def srv(tmp_path, photos4):
    return make_server(tmp_path / "ws", photos4)


def first_image(srv) -> int:
    return srv.client("view").get("/api/datasets/cloth/images").json()["ids"][0]


def annotate(c, image_id: int, headers: dict) -> int:
    return c.post(f"/api/images/{image_id}/annotations", json={"labels": ["hat"]}, headers=headers).status_code


def test_cli_password_reset_ends_cached_basic_auth_at_once(srv, monkeypatch):
    first, c, old = first_image(srv), srv.client(), basic("ann", PASSWORDS["ann"])
    assert annotate(c, first, old) == 200  # verified with argon2, then cached
    calls = []
    real = users.authenticate
    monkeypatch.setattr(users, "authenticate", lambda *a: calls.append(a[1]) or real(*a))
    assert annotate(c, first, old) == 200 and calls == []  # a cache hit does not run argon2

    # another process (the CLI, its own engine on the same database) resets ann's password and demotes her
    r = runner.invoke(app, ["user", "add", "ann", "--role", "viewer", "--password", "newpw1", "-w", str(srv.ws.root)])
    assert r.exit_code == 0, r.output
    assert "Existing user ann updated" in r.output and "revoked" in r.output

    assert annotate(c, first, old) == 401
    new = basic("ann", "newpw1")
    assert c.get("/api/auth/me", headers=new).json()["role"] == "viewer"
    assert annotate(c, first, new) == 403
    assert annotate(c, first, new) == 403  # and from the cache too


def test_role_change_with_same_password_applies_to_cached_basic_auth_and_keeps_tokens(srv):
    first, c, pair = first_image(srv), srv.client(), basic("ann", PASSWORDS["ann"])
    assert annotate(c, first, pair) == 200
    other = Workspace.open(srv.ws.root)  # as another process would
    with other.session() as s:
        users.create_user(s, "ann", "viewer", PASSWORDS["ann"], replace=True)
    assert annotate(c, first, pair) == 403  # the cached pair still logs in, with the role stored now
    assert c.get("/api/auth/me", headers=pair).json()["role"] == "viewer"
    assert srv.client("ann").get("/api/auth/me").json()["role"] == "viewer"  # same password: token kept
    r = runner.invoke(app, ["user", "add", "ann", "--role", "annotator", "--password", PASSWORDS["ann"],
                            "--json", "-w", str(srv.ws.root)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["updated"] is True and out["tokens_revoked"] is False and out["role"] == "annotator"
    assert annotate(c, first, pair) == 200


def test_password_reset_revokes_sessions_and_api_tokens(srv):
    c = srv.client()
    assert c.post("/api/auth/login", json={"name": "ann", "password": PASSWORDS["ann"]}).status_code == 200
    assert c.get("/api/auth/me").json()["name"] == "ann"
    assert c.get("/api/auth/session").json()["user"]["name"] == "ann"
    bob = srv.client("bob")
    assert srv.client("ann").get("/api/auth/me").status_code == 200
    with Workspace.open(srv.ws.root).session() as s:
        users.create_user(s, "ann", "annotator", "newpw1", replace=True)
    assert c.get("/api/auth/me").status_code == 401  # the session cookie
    assert c.get("/api/auth/session").json() == {"user": None}  # asked without an error
    assert srv.client("ann").get("/api/auth/me").status_code == 401  # the API token
    assert bob.get("/api/auth/me").json()["name"] == "bob"  # other users keep theirs
    assert c.post("/api/auth/login", json={"name": "ann", "password": "newpw1"}).status_code == 200


def test_add_user_refuses_an_existing_name_unless_asked_to_replace(srv):
    admin, c, ann = srv.client("root"), srv.client(), basic("ann", PASSWORDS["ann"])
    r = admin.post("/api/users", json={"name": "ann", "role": "viewer", "password": "newpw1"})
    assert r.status_code == 409 and "'ann' already exists" in r.json()["detail"] and "replace" in r.json()["detail"]
    assert c.get("/api/auth/me", headers=ann).json()["role"] == "annotator"  # untouched
    assert c.get("/api/auth/me", headers=basic("ann", "newpw1")).status_code == 401

    r = admin.post("/api/users", json={"name": "ann", "role": "viewer", "password": "newpw1", "replace": True})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert c.get("/api/auth/me", headers=ann).status_code == 401
    assert c.get("/api/auth/me", headers=basic("ann", "newpw1")).json()["role"] == "viewer"

    r = admin.post("/api/users", json={"name": "carl", "role": "annotator", "password": "carl-pw"})
    assert r.status_code == 200 and r.json()["name"] == "carl"
    assert {u["name"]: u["role"] for u in admin.get("/api/users").json()} == {
        "ann": "viewer", "bob": "annotator", "carl": "annotator", "root": "admin", "view": "viewer"}
    with srv.ws.session() as s, pytest.raises(ConfigError, match="already exists"):
        users.create_user(s, "carl", "admin", "other-pw")  # the store refuses too, without replace=True


def test_cli_user_add_creates_then_updates_without_prompting(tmp_path):
    ws_dir = str(tmp_path / "ws")
    r = runner.invoke(app, ["user", "add", "dee", "--role", "admin", "--password", "pw-1", "-w", ws_dir])
    assert r.exit_code == 0 and "dee" in r.output and "created" in r.output, r.output
    r = runner.invoke(app, ["user", "add", "dee", "--role", "viewer", "--password", "pw-2", "-w", ws_dir])
    assert r.exit_code == 0 and "Existing user dee updated" in r.output, r.output
    with Workspace.open(tmp_path / "ws").session() as s:
        assert users.authenticate(s, "dee", "pw-1") is None
        assert users.authenticate(s, "dee", "pw-2").role == "viewer"


def test_accounts_can_be_removed_and_tokens_revoked_or_expire(srv):
    first, bob = first_image(srv), srv.client("bob")
    assert annotate(bob, first, {}) == 200
    assert srv.client("ann").delete("/api/users/bob").status_code == 403  # admins only
    assert srv.client("root").delete("/api/users/bob").json() == {"removed": "bob"}
    assert bob.get("/api/auth/me").status_code == 401  # its token died with it; its label stays, under its name
    assert srv.client("root").get(f"/api/images/{first}").json()["annotations"][-1]["author"] == "bob"
    r = srv.client("root").delete("/api/users/root")
    assert r.status_code == 400 and "only admin" in r.json()["detail"]
    assert srv.client("root").delete("/api/users/nobody").status_code == 404

    ann = srv.client("ann")
    assert ann.delete("/api/tokens").json() == {"revoked": 1}  # its scripts' tokens; basic auth still works
    assert ann.get("/api/auth/me").status_code == 401
    assert srv.client().get("/api/auth/me", headers=basic("ann", PASSWORDS["ann"])).status_code == 200

    ws = str(srv.ws.root)
    r = runner.invoke(app, ["user", "token", "view", "--days", "0.00001", "--json", "-w", ws])
    short = json.loads(r.stdout)["token"]
    r = runner.invoke(app, ["user", "token", "view", "--json", "-w", ws])
    forever = json.loads(r.stdout)["token"]
    import time

    time.sleep(1.0)
    auth = srv.client().get
    assert auth("/api/auth/me", headers={"Authorization": f"Bearer {short}"}).status_code == 401  # expired
    assert auth("/api/auth/me", headers={"Authorization": f"Bearer {forever}"}).status_code == 200
    r = runner.invoke(app, ["user", "revoke", "view", "--json", "-w", ws])
    assert r.exit_code == 0 and json.loads(r.stdout)["revoked"] == 3, r.output  # the fixture's, short, forever
    assert auth("/api/auth/me", headers={"Authorization": f"Bearer {forever}"}).status_code == 401
    r = runner.invoke(app, ["user", "remove", "view", "-w", ws])
    assert r.exit_code == 0 and "Removed" in r.output
    r = runner.invoke(app, ["user", "remove", "root", "-w", ws])
    assert r.exit_code != 0 and "only admin" in r.output


def test_failed_logins_are_throttled_per_name_and_address(tmp_path):
    srv = make_server(tmp_path / "ws", None)
    c = srv.client()
    for _ in range(10):
        assert c.post("/api/auth/login", json={"name": "ann", "password": "guess"}).status_code == 401
    r = c.post("/api/auth/login", json={"name": "ann", "password": PASSWORDS["ann"]})  # even the right one, now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "try again" in r.json()["detail"]
    assert c.get("/api/auth/me", headers=basic("ann", PASSWORDS["ann"])).status_code == 429  # basic auth too
    assert c.post("/api/auth/login", json={"name": "view", "password": PASSWORDS["view"]}).status_code == 200


@pytest.mark.parametrize("name", ["a/b", "  ", "", "a\\b", "tab\there", "x" * 101, " pets", ".."])
def test_bad_dataset_names_are_refused_with_400_and_nothing_is_created(tmp_path, name):
    srv = make_server(tmp_path / "ws", None)
    admin = srv.client("root")
    r = admin.post("/api/datasets", json={"name": name, "classes": ["cat", "dog"]})
    if name == "":
        assert r.status_code == 422  # the request model's min_length
    else:
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith(f"Dataset name {name!r} ")
    assert admin.get("/api/datasets").json() == []


@pytest.mark.parametrize("name", ["from-ls", "demo-clothing", "Vögel 2024", "猫_v1.2", "cats & dogs"])
def test_good_dataset_names_work_in_every_route(tmp_path, name):
    srv = make_server(tmp_path / "ws", None)
    admin = srv.client("root")
    assert admin.post("/api/datasets", json={"name": name, "classes": ["cat", "dog"]}).status_code == 200
    r = admin.get(f"/api/datasets/{quote(name, safe='')}")
    assert r.status_code == 200 and r.json()["name"] == name
    assert admin.get(f"/api/datasets/{quote(name, safe='')}/images").status_code == 200


def test_cli_import_refuses_a_bad_dataset_name(tmp_path, photos4):
    ws_dir = str(tmp_path / "ws")
    r = runner.invoke(app, ["import", str(photos4), "--name", "a/b", "-w", ws_dir])
    assert r.exit_code == 2 and "Dataset name 'a/b'" in r.output and "'/'" in r.output, r.output
    with Workspace.open(tmp_path / "ws").session() as s:
        assert s.scalars(select(Dataset)).all() == []


def test_the_login_throttle_forgets_old_failures_when_flooded(tmp_path, monkeypatch):
    from pixclass.server import auth

    monkeypatch.setattr(auth, "MAX_TRACKED", 50)
    srv = make_server(tmp_path / "ws", None)
    c = srv.client()
    for n in range(120):  # a flood of made-up names: the table stays bounded
        c.post("/api/auth/login", json={"name": f"nobody{n}", "password": "guess"})
    assert len(srv.app.state.login_throttle._fails) <= 50
    assert c.post("/api/auth/login", json={"name": "ann", "password": PASSWORDS["ann"]}).status_code == 200


def test_two_admins_removing_each_other_leave_one(srv):
    import threading
    import time

    with srv.ws.session() as s:
        users.create_user(s, "root2", "admin", "root2-pw")
    answer: dict = {}
    with srv.ws.session() as s:  # root2 removes root; before it commits, root removes root2
        users.remove_user(s, "root")
        late = threading.Thread(target=lambda: answer.update(r=srv.client().delete(
            "/api/users/root2", headers=basic("root", PASSWORDS["root"]))))
        late.start()
        time.sleep(0.5)
    late.join(20)
    assert answer["r"].status_code in (400, 401)  # root is gone, or root2 is the only admin left
    with srv.ws.session() as s:
        assert [u.name for u in users.list_users(s) if u.role == "admin"] == ["root2"]
