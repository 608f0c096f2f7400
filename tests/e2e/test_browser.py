"""The labeling UI in a real browser: Playwright drives Debian's Chromium against `pixclass serve` on 127.0.0.1.

Logs in, labels with the keyboard (digits, arrows, undo), bulk-tags a selection, trains from the UI, accepts
suggestions (space, and all above a threshold), and checks every label in the database. Screenshots of the grid
and the image view go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, claims, records, users
from pixclass.store.tables import Annotation, Image, Prediction

from tests.browser import ARTIFACTS, launch, need_browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos4):
    need_browser()
    root = tmp_path_factory.mktemp("browser")
    labeled, unlabeled = copy_photos(photos4, root, slice(0, 20), slice(20, 23))
    ws = Workspace.open(root / "ws")
    import_dataset(ws, labeled, "cloth")
    import_dataset(ws, unlabeled, "cloth")
    with ws.session() as s:
        users.create_user(s, "ann", "annotator", "ann-pw")
        users.create_user(s, "root", "admin", "root-pw")
    yield from serve(ws)


def serve(ws: Workspace):
    """``pixclass serve`` on the workspace, on a free loopback port: yields (base URL, ws), stops it after."""
    port = _free_port()
    env = {**os.environ, "PIXCLASS_WORKSPACE": str(ws.root)}
    cli = shutil.which("pixclass", path=str(Path(sys.executable).parent)) or "pixclass"
    proc = subprocess.Popen([cli, "serve", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stdout.read().decode()[-2000:]}")
    yield base, ws
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(20_000)
        yield pg
        browser.close()


def logged_in_page(page, base: str, name: str, password: str):
    """A second browser context (its own cookies) logged in as ``name``, showing the grid."""
    ctx = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    pg.goto(base)
    pg.fill("#login-name", name)
    pg.fill("#login-password", password)
    pg.click("#login-submit")
    pg.wait_for_selector("#grid .card")
    return ctx, pg


def copy_photos(photos4: Path, root: Path, labeled: slice, unlabeled: slice) -> tuple[Path, Path]:
    """root/labeled/<class>/ (imports labeled) and root/unlabeled/<class>-<name> (imports unlabeled)."""
    lab, unl = root / "labeled", root / "unlabeled"
    unl.mkdir(parents=True)
    for cls in ("hat", "pants", "shoes", "t-shirt"):
        files = sorted((photos4 / cls).glob("*.jpg"))
        (lab / cls).mkdir(parents=True)
        for f in files[labeled]:
            shutil.copy(f, lab / cls / f.name)
        for f in files[unlabeled]:
            shutil.copy(f, unl / f"{cls}-{f.name}")
    return lab, unl


def label_unlabeled(pg, dataset: str, n: int) -> None:
    """Open ``dataset``'s unlabeled images (``n`` of them) in the grid, then the first in the image view."""
    pg.select_option("#dataset", dataset)
    pg.select_option("#f-status", "unlabeled")
    pg.click("#apply-filters")
    pg.wait_for_function(f"document.querySelector('#count').textContent === '{n} images'")
    pg.locator("#grid .card img").first.click()
    pg.wait_for_selector(f"#pos:has-text('1 / {n}')")


def human(ws: Workspace) -> list[Annotation]:
    with ws.session() as s:
        return list(s.scalars(select(Annotation).where(Annotation.source == "human").order_by(Annotation.id)))


def name_of_path(ws: Workspace, image_id: int) -> str:
    """The image's absolute path without its leading '/', as Label Studio's local-files links hold it."""
    with ws.session() as s:
        return Path(s.get(Image, image_id).path).resolve().as_posix().lstrip("/")


def name_of(ws: Workspace, image_id: int) -> str:
    with ws.session() as s:
        return Path(s.get(Image, image_id).path).name


def test_label_with_keyboard_bulk_tag_train_and_accept(server, page):
    base, ws = server
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(base)
    page.fill("#login-password", "wrong")
    page.fill("#login-name", "ann")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('Wrong')")
    page.fill("#login-password", "ann-pw")
    page.click("#login-submit")
    page.wait_for_selector("#grid .card")
    assert page.locator("#grid .card").count() == 60  # first page of 92

    page.select_option("#f-status", "unlabeled")
    page.click("#apply-filters")
    page.wait_for_selector("#count:has-text('12 images')")
    page.screenshot(path=str(ARTIFACTS / "grid.png"), full_page=True)

    # keyboard labeling: 1 = hat, 3 = shoes, arrows move, z undoes
    files: list[str] = []
    record = lambda r: files.append(r.url) if r.url.endswith("/file") else None  # noqa: E731
    page.on("request", record)
    page.locator("#grid .card img").first.click()
    page.wait_for_selector("#image-view:not([hidden])")
    page.wait_for_function("document.querySelector('#big').complete")
    page.screenshot(path=str(ARTIFACTS / "image-view.png"), full_page=True)
    page.wait_for_timeout(300)  # some time_spent to record
    for _ in range(50):  # the next image is fetched while this one is shown
        if len(files) >= 2:
            break
        page.wait_for_timeout(100)
    assert len(set(files)) == 2, files
    page.keyboard.press("1")
    page.wait_for_selector("#pos:has-text('2 / 12')")
    page.remove_listener("request", record)
    assert page.evaluate("document.querySelector('#big').src") == files[1]
    hide = "h => { Object.defineProperty(document, 'hidden', {value: h, configurable: true}); " \
           "document.dispatchEvent(new Event('visibilitychange')); }"
    page.evaluate(hide, True)  # the annotator switches tabs for a while: that time is not time spent labeling
    page.wait_for_timeout(1500)
    page.evaluate(hide, False)
    page.keyboard.press("3")
    page.wait_for_selector("#pos:has-text('3 / 12')")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#pos:has-text('4 / 12')")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector("#pos:has-text('3 / 12')")
    page.keyboard.press("2")
    page.wait_for_selector("#pos:has-text('4 / 12')")
    page.keyboard.press("z")  # takes back the "pants" label of image 3
    page.wait_for_selector("#image-msg:has-text('Undone')")
    page.wait_for_function("document.querySelector('#dataset').selectedOptions[0].textContent === 'cloth (82/92)'")
    assert "3 / 12" in page.inner_text("#pos")
    rows = human(ws)
    assert [(a.labels, a.author) for a in rows] == [(["hat"], "ann"), (["shoes"], "ann")]
    assert all(a.time_spent and a.time_spent > 0.2 for a in rows[:1]) and 0 < rows[1].time_spent < 1.0
    assert name_of(ws, rows[0].image_id).startswith("hat-")  # unlabeled files are sorted by class prefix

    # bulk tagging of a selection
    page.keyboard.press("Escape")
    page.wait_for_selector("#grid-view:not([hidden]) .card")
    page.wait_for_selector("#count:has-text('10 images')")
    cards = page.locator("#grid .card .sel")
    cards.nth(0).check()
    cards.nth(1).check()
    page.wait_for_selector("#sel-count:has-text('2 selected')")
    page.select_option("#bulk-class", "pants")
    page.click("#bulk-btn")
    page.wait_for_selector("#grid-msg:has-text('Tagged 2 images')")
    assert [a.labels for a in human(ws)[2:]] == [["pants"], ["pants"]]
    page.click("#undo-bulk")  # a wrong bulk tag is taken back whole
    page.wait_for_selector("#grid-msg:has-text('Undone: 2 labels')")
    assert len(human(ws)) == 2
    page.wait_for_selector("#count:has-text('10 images')")
    cards.nth(0).check()
    page.wait_for_timeout(400)  # choosing takes time: it counts, shared among the selection
    cards.nth(1).check()
    page.select_option("#bulk-class", "t-shirt")
    page.click("#bulk-btn")
    page.wait_for_selector("#grid-msg:has-text('Tagged 2 images')")
    rows = human(ws)
    assert [a.labels for a in rows[2:]] == [["t-shirt"], ["t-shirt"]] and {a.author for a in rows} == {"ann"}
    assert all(0.2 < a.time_spent < 30 for a in rows[2:])

    # train from the UI, then accept a suggestion with space and the rest above a threshold
    page.click("#train-btn")
    page.wait_for_selector("#grid-msg:has-text('suggestions refreshed')", timeout=240_000)
    page.wait_for_selector("#grid .card .pred:has-text('model:')")
    page.locator("#grid .card img").first.click()
    page.wait_for_selector("#suggested")
    suggested = page.inner_text("#suggested")
    page.keyboard.press(" ")
    page.wait_for_selector("#image-msg:has-text('Saved')")
    accepted = human(ws)[-1]
    assert accepted.labels == [suggested] and accepted.from_run is not None
    page.keyboard.press("Escape")
    page.wait_for_selector("#count:has-text('7 images')")
    page.fill("#threshold", "0.3")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))  # asked first; "no" stores nothing
    page.click("#accept-btn")
    for _ in range(100):
        if asked:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    assert len(asked) == 1 and asked[0].startswith("Accept ") and len(human(ws)) == 5
    page.once("dialog", lambda d: d.accept())
    page.click("#accept-btn")
    page.wait_for_selector("#grid-msg:has-text('Accepted')")
    msg = page.inner_text("#grid-msg")
    n = int(msg.split()[1])
    assert f"Accept {n} model suggestions" in asked[0]  # the question counted what was then accepted
    rows = human(ws)
    assert n >= 1 and len(rows) == 5 + n and all(a.from_run for a in rows[5:])
    page.select_option("#f-status", "accepted")  # accepted suggestions can be found again, and are marked
    page.click("#apply-filters")
    page.wait_for_selector(f"#count:has-text('{n + 1} images')")  # the bulk ones and the one taken with space
    assert page.locator("#grid .card .labels:has-text('accepted')").count() == n + 1
    with ws.session() as s:  # each accepted label is exactly the stored suggestion of that image
        for a in rows[4:]:
            pred = s.scalar(select(Prediction).where(Prediction.image_id == a.image_id,
                                                     Prediction.run_id == a.from_run))
            assert pred is not None and a.labels == pred.labels
    page.select_option("#f-status", "")
    page.click("#apply-filters")
    page.wait_for_selector("#count:has-text('92 images')")
    page.screenshot(path=str(ARTIFACTS / "grid-after.png"), full_page=True)

    # export to Label Studio from the UI: every image a task, our labels as annotations, suggestions as predictions
    with page.expect_download() as dl:
        page.click("#export-ls")
    assert dl.value.suggested_filename == "cloth-labelstudio.json"
    tasks = json.loads(Path(dl.value.path()).read_text())
    assert len(tasks) == 92
    by_id = {t["data"]["pixclass_image_id"]: t for t in tasks}
    for a in rows:  # the annotator's labels, from the keyboard, bulk tagging and accepted suggestions
        [ann] = [x for x in by_id[a.image_id]["annotations"] if x["result"][0]["value"]["choices"] == a.labels]
    with ws.session() as s:
        run = records.latest_run(s)
        preds = {p.image_id: p for p in s.scalars(select(Prediction).where(Prediction.run_id == run.id))}
    assert len(preds) == 92 and all(len(t["predictions"]) == 1 for t in tasks)
    for im_id, p in preds.items():
        [lp] = by_id[im_id]["predictions"]
        assert lp["model_version"] == f"pixclass-run-{run.id}" and abs(lp["score"] - p.score) < 1e-5  # as /setup
        assert lp["result"][0]["value"]["choices"] == p.labels
    with page.expect_download() as dl:
        page.click("#export-ls-config")
    config = Path(dl.value.path()).read_text()
    assert '<Choices name="choice" toName="image"' in config and all(f'"{c}"' in config
                                                                       for c in ("hat", "pants", "shoes", "t-shirt"))
    # with Label Studio's document root given, image links are relative to it
    assert by_id[rows[0].image_id]["data"]["image"] == f"/data/local-files/?d={name_of_path(ws, rows[0].image_id)}"
    page.fill("#export-root", str(ws.root.parent))
    with page.expect_download() as dl:
        page.click("#export-ls")
    relative = {t["data"]["pixclass_image_id"]: t["data"]["image"]
                for t in json.loads(Path(dl.value.path()).read_text())}
    rel = Path(name_of_path(ws, rows[0].image_id)).relative_to(ws.root.parent.as_posix().lstrip("/"))
    assert relative[rows[0].image_id] == f"/data/local-files/?d={rel.as_posix()}"
    page.fill("#export-root", "/no/such/root")  # a root that does not hold the images: the reason on the page
    page.click("#export-ls")
    page.wait_for_selector("#grid-msg:has-text('Export refused')")
    assert "not under the document root /no/such/root" in page.inner_text("#grid-msg")
    page.fill("#export-root", "")


def test_taxonomy_picker_searches_hundreds_of_classes(server, page):
    """A hierarchical dataset with 300 classes: type to search, Enter picks the first match and saves."""
    from pixclass.schema import LabelSchema
    from pixclass.store import records

    base, ws = server
    classes = tuple(f"clothing/{group}/item{i:03d}" for group in ("head", "legs", "feet") for i in range(100))
    with ws.session() as s:
        src = s.scalar(select(Image).order_by(Image.id).limit(1))
        ds = records.get_or_create_dataset(s, "taxo", task="hierarchical")
        records.save_schema(s, ds, LabelSchema("hierarchical", classes))
        s.add(Image(dataset_id=ds.id, path=src.path, sha256=src.sha256, width=src.width, height=src.height,
                    format=src.format, split="train"))
    page.goto(base)
    page.wait_for_selector("#grid .card")
    page.select_option("#dataset", "taxo")
    page.wait_for_selector("#count:has-text('1 image')")
    page.locator("#grid .card img").first.click()
    page.wait_for_selector("#taxonomy-search")
    assert page.locator("#picker label").count() == 50  # the first 50 of 300 are listed until you type
    page.fill("#taxonomy-search", "feet/item04")
    page.wait_for_function("document.querySelectorAll('#picker label').length === 10")
    page.press("#taxonomy-search", "Enter")
    page.wait_for_selector("#image-msg:has-text('Saved clothing/feet/item040')")
    with ws.session() as s:
        a = s.scalars(select(Annotation).order_by(Annotation.id.desc())).first()
    assert a.labels == ["clothing/feet/item040"] and a.author == "ann"


def test_class_lists_past_ten_are_searchable(server, page):
    """With more classes than digits, a flat list gets the search box too: digits pick among the matches, Enter picks
    the first match (single label) or ticks it (multi-label). The next image starts with the whole list: a search
    left over from the last image would silently change what each digit means."""
    from pixclass.schema import LabelSchema

    base, ws = server
    fruit = ("apple", "apricot", "banana", "blueberry", "cherry", "grape", "kiwi", "lemon", "mango", "orange",
             "peach", "pear")
    with ws.session() as s:
        src = list(s.scalars(select(Image).order_by(Image.id).limit(2)))
        for name, task in (("fruit", "multiclass"), ("fruit-tags", "multilabel")):
            ds = records.get_or_create_dataset(s, name, task=task)
            records.save_schema(s, ds, LabelSchema(task, fruit))
            for im in src:
                s.add(Image(dataset_id=ds.id, path=im.path, sha256=im.sha256, width=im.width, height=im.height,
                            format=im.format, split="train"))
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")

    def open_first(dataset: str) -> None:
        pg.select_option("#dataset", dataset)
        pg.wait_for_function("document.querySelector('#count').textContent === '2 images'")  # not '92 images'
        pg.locator("#grid .card img").first.click()
        pg.wait_for_selector("#pos:has-text('1 / 2')")

    def newest(n: int) -> list[list[str]]:
        return [a.labels for a in human(ws)[-n:]]

    open_first("fruit")
    assert pg.locator("#picker label").count() == 12
    pg.keyboard.press("/")
    pg.keyboard.type("pe")  # grape, peach, pear
    pg.wait_for_function("document.querySelectorAll('#picker label').length === 3")
    pg.keyboard.press("Escape")
    pg.keyboard.press("3")  # the third match: pear, the twelfth class
    pg.wait_for_selector("#image-msg:has-text('Saved pear')")
    pg.wait_for_selector("#pos:has-text('2 / 2')")
    assert pg.input_value("#taxonomy-search") == "" and pg.locator("#picker label").count() == 12
    pg.keyboard.press("/")
    pg.keyboard.type("gr")
    pg.wait_for_function("document.querySelectorAll('#picker label').length === 1")
    pg.keyboard.press("Enter")  # the first match
    pg.wait_for_selector("#image-msg:has-text('Saved grape')")
    assert newest(2) == [["pear"], ["grape"]]

    before = len(human(ws))
    open_first("fruit-tags")  # a new dataset starts with an empty search, and no word of the last image's label
    assert pg.input_value("#taxonomy-search") == "" and pg.inner_text("#image-msg") == ""
    pg.keyboard.press("/")
    pg.keyboard.type("an")  # banana, mango, orange
    pg.wait_for_function("document.querySelectorAll('#picker label').length === 3")
    pg.keyboard.press("Enter")  # ticks banana, saves nothing yet
    pg.wait_for_selector("#picker label.active:has-text('banana')")
    pg.keyboard.press("Escape")
    pg.keyboard.press("3")  # ticks orange
    pg.wait_for_selector("#picker label.active:has-text('orange')")
    assert len(human(ws)) == before  # nothing saved while ticking
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#image-msg:has-text('Saved banana, orange')")
    assert newest(1) == [["banana", "orange"]]
    ctx.close()


def test_admin_imports_uploads_and_adds_a_user(server, page, tmp_path, photos4):
    """The admin tab: import a server folder as a background job (its broken file named), upload images into the
    current dataset (a non-image rejected with the reason), add an account; an annotator does not see the tab."""
    base, ws = server
    src = tmp_path / "new-photos"
    for cls in ("hat", "shoes"):
        (src / cls).mkdir(parents=True)
        for f in sorted((photos4 / cls).glob("*.jpg"))[25:28]:
            shutil.copy(f, src / cls / f.name)
    (src / "hat" / "empty.jpg").write_bytes(b"")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not an image")
    upload = sorted((photos4 / "pants").glob("*.jpg"))[28]

    assert page.locator("button[data-tab=admin]").is_hidden()  # the annotator's page
    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    pg.click("button[data-tab=admin]")
    pg.wait_for_selector("#users tbody tr")
    assert {r.split("\t")[0] for r in pg.locator("#users tbody tr").all_inner_texts()} == {"ann", "root"}

    pg.fill("#user-name", "bob")
    pg.select_option("#user-role", "viewer")
    pg.fill("#user-password", "abc")  # too short: the reason in words, naming the field
    pg.click("#user-add")
    pg.wait_for_selector("#admin-msg:has-text('password: String should have at least 4 characters')")
    pg.fill("#user-password", "bob-pw-1")
    pg.click("#user-add")
    pg.wait_for_selector("#admin-msg:has-text('Added bob (viewer)')")
    assert pg.locator("#users tbody tr").count() == 3
    # adding an existing name asks first: dismissed, bob stays as he is; accepted, bob is updated
    pg.fill("#user-name", "bob")
    pg.fill("#user-password", "bob-pw-2")
    pg.once("dialog", lambda d: d.dismiss())
    pg.click("#user-add")
    pg.wait_for_selector("#admin-msg:has-text('already exists')")
    with ws.session() as s:
        assert users.authenticate(s, "bob", "bob-pw-1") is not None
    pg.fill("#user-password", "bob-pw-1")
    pg.once("dialog", lambda d: d.accept())
    pg.click("#user-add")
    pg.wait_for_selector("#admin-msg:has-text('Updated bob (viewer)')")

    pg.fill("#import-src", str(src))
    pg.fill("#import-name", "fresh")
    pg.click("#import-btn")
    pg.wait_for_selector("#admin-msg:has-text('Imported 6 images into fresh')", timeout=60_000)
    assert "empty.jpg" in pg.inner_text("#admin-msg")
    assert pg.input_value("#dataset") == "fresh"

    pg.set_input_files("#upload-files", [str(upload), str(not_image)])
    pg.click("#upload-btn")
    pg.wait_for_selector("#admin-msg:has-text('Uploaded 1 image to fresh')")
    assert "notes.jpg" in pg.inner_text("#admin-msg")
    pg.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
    many = tmp_path / "many"  # more files than one request takes (200): the page sends them in parts
    many.mkdir()
    rng = np.random.default_rng(3)
    for i in range(230):
        PILImage.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(many / f"m{i:03d}.png")
    pg.set_input_files("#upload-files", sorted(str(f) for f in many.iterdir()))
    pg.click("#upload-btn")
    pg.wait_for_selector("#admin-msg:has-text('Uploaded 230 images to fresh; 0 duplicates skipped.')")
    with ws.session() as s:
        bob = users.authenticate(s, "bob", "bob-pw-1")
        assert bob is not None and bob.role == "viewer"

    # an account goes after a confirmation; the last admin cannot
    pg.once("dialog", lambda d: d.accept())
    pg.locator("#users tbody tr", has_text="bob").locator("button.remove-user").click()
    pg.wait_for_selector("#admin-msg:has-text('Removed bob')")
    pg.wait_for_function("document.querySelectorAll('#users tbody tr').length === 2")
    pg.once("dialog", lambda d: d.accept())
    pg.locator("#users tbody tr", has_text="root").locator("button.remove-user").click()
    pg.wait_for_selector("#admin-msg:has-text('only admin')")

    # a training started by the API shows in the Jobs tab, where its Cancel button stops it
    job = httpx.post(f"{base}/api/train", auth=("root", "root-pw"), timeout=30,
                     json={"dataset": "cloth", "mode": "finetune", "epochs": 200, "img_size": 64}).json()
    pg.click("button[data-tab=jobs]")
    pg.locator(f"tr[data-job='{job['id']}'] button.cancel-job").click()
    pg.wait_for_selector(f"#jobs-msg:has-text('Job {job['id']}')")
    pg.wait_for_selector(f"tr[data-job='{job['id']}'] td:has-text('cancelled')", timeout=60_000)
    assert "Cancelled by root" in pg.inner_text(f"tr[data-job='{job['id']}']")
    ctx.close()

    with ws.session() as s:
        assert users.find_user(s, "bob") is None
        ds = records.get_dataset(s, "fresh")
        items = records.items(s, ds)
        assert len(items) == 7 + 230 and sum(1 for it in items if it.labels) == 6
        assert records.load_schema(s, ds).classes == ("hat", "shoes")


def test_auto_retrain_every_n_labels_while_labeling(server, page, tmp_path, photos4):
    """An admin sets "retrain every N labels"; the Nth keyboard label starts a linear retraining job, and the image
    view gets the new model's suggestion without leaving the image."""
    base, ws = server
    labeled, unlabeled = copy_photos(photos4, tmp_path, slice(0, 8), slice(29, 30))
    gone = unlabeled / "zz-broken-later.jpg"  # imported fine, then overwritten: pre-labeling skips it and says so
    PILImage.open(sorted((photos4 / "hat").glob("*.jpg"))[10]).transpose(PILImage.FLIP_TOP_BOTTOM).save(gone)
    import_dataset(ws, labeled, "auto")
    import_dataset(ws, unlabeled, "auto")
    gone.write_bytes(b"\xff\xd8\xff not a photo any more")

    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    pg.select_option("#dataset", "auto")
    pg.wait_for_selector("#autotrain-info:has-text('32 new labels (no run yet)')")  # no run yet: every label
    pg.fill("#autotrain-every", "35")
    pg.click("#autotrain-btn")
    pg.wait_for_selector("#grid-msg:has-text('Retraining after every 35 new labels')")
    pg.wait_for_selector("#autotrain-info:has-text('retrains (linear) every 35')")

    pg.select_option("#f-status", "unlabeled")
    pg.click("#apply-filters")
    pg.wait_for_selector("#count:has-text('5 images')")
    pg.locator("#grid .card img").first.click()
    pg.wait_for_selector("#image-view:not([hidden])")
    assert pg.locator("#suggested").count() == 0  # no model yet
    for i, key in enumerate("123"):
        pg.keyboard.press(key)
        pg.wait_for_selector(f"#pos:has-text('{i + 2} / 5')")
    assert "retraining (job" in pg.inner_text("#image-msg")
    pg.wait_for_selector("#image-msg:has-text('suggestions refreshed')", timeout=240_000)
    assert pg.is_visible("#image-view") and "4 / 5" in pg.inner_text("#pos")  # still labeling the same image
    assert f"1 image left out, their files can no longer be read: {gone}" in pg.inner_text("#image-msg")
    suggested = pg.inner_text("#suggested")
    pg.keyboard.press("ArrowRight")  # the file that broke after import: the view says why it shows nothing
    pg.wait_for_selector("#pos:has-text('5 / 5')")
    pg.wait_for_selector("#image-msg:has-text('This image cannot be shown')")
    assert "zz-broken-later.jpg" in pg.inner_text("#image-msg")
    pg.keyboard.press("Escape")
    pg.wait_for_selector("#autotrain-info:has-text('0 new labels since the last run')")
    with ws.session() as s:
        run_id = records.latest_run(s, records.get_dataset(s, "auto")).id
    pg.wait_for_selector(f"#serving-run option:has-text('newest (run {run_id})')", state="attached")
    pg.select_option("#serving-run", str(run_id))  # an admin pins the run: it keeps serving after newer ones
    pg.wait_for_selector(f"#grid-msg:has-text('Run {run_id} serves until')")
    ctx.close()
    with ws.session() as s:
        assert records.pinned_run(s, records.get_dataset(s, "auto")).id == run_id

    with ws.session() as s:
        ds = records.get_dataset(s, "auto")
        run = records.latest_run(s, ds)
        assert run is not None and run.mode == "linear"
        gone_id, shown_id = s.scalars(select(Image.id).where(Image.dataset_id == ds.id).order_by(Image.id.desc())
                                      .limit(2))
        pred = s.scalar(select(Prediction).where(Prediction.run_id == run.id, Prediction.image_id == shown_id))
        assert pred is not None and pred.labels == [suggested]
        assert s.scalar(select(Prediction).where(Prediction.image_id == gone_id)) is None
    assert [a.labels for a in human(ws) if a.author == "root"] == [["hat"], ["pants"], ["shoes"]]


def test_reviewer_rejects_accepts_and_clears_in_the_image_view(server, page, tmp_path, photos4):
    """An admin's verdicts in the image view decide the image's label; "clear" takes a verdict back."""
    base, ws = server
    labeled, _ = copy_photos(photos4, tmp_path, slice(1, 2), slice(0, 0))
    import_dataset(ws, labeled, "rev")
    with ws.session() as s:
        first = records.items(s, records.get_dataset(s, "rev"))[0]
        s.add(Annotation(image_id=first.image_id, labels=["pants"], source="human", author="ann"))
    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    pg.select_option("#dataset", "rev")
    pg.wait_for_selector("#count:has-text('4 images')")
    pg.locator("#grid .card img").first.click()
    pg.wait_for_selector("#current-labels:has-text('pants')")
    theirs = pg.locator("#history li", has_text="by ann")
    assert theirs.locator("button").all_inner_texts() == ["accept", "reject"]
    theirs.locator("button", has_text="reject").click()
    pg.wait_for_selector("#current-labels:has-text('hat')")  # the imported label again
    assert theirs.locator("button").all_inner_texts() == ["accept", "clear"]
    assert pg.is_checked("#picker input[value=hat]")
    theirs.locator("button", has_text="clear").click()
    pg.wait_for_selector("#current-labels:has-text('pants')")
    theirs.locator("button", has_text="accept").click()
    pg.wait_for_selector("#history li:has-text('accepted by root')")
    assert theirs.locator("button").all_inner_texts() == ["reject", "clear"]
    with ws.session() as s:  # a vote after the verdict: a new conflict, reviewed from the Review tab
        s.add(Annotation(image_id=first.image_id, labels=["shoes"], source="human", author="bob"))
    pg.keyboard.press("Escape")
    pg.click("button[data-tab=review]")
    pg.locator("#conflicts tr").first.click()
    pg.wait_for_selector(f"#pos:has-text('#{first.image_id}')")
    pg.keyboard.press("Escape")  # back where the reviewer came from
    pg.wait_for_selector("#review-view:not([hidden])")
    bob_row = pg.locator("#annotators tr", has_text="bob").inner_text()  # per annotator: bob's vote, pending
    assert bob_row.split("\t")[:6] == ["bob", "1", "1", "0", "0", "1"], bob_row
    with ws.session() as s:  # ann relabels: her accepted row is no longer her vote, and offers no verdict
        s.add(Annotation(image_id=first.image_id, labels=["t-shirt"], source="human", author="ann"))
    pg.click("button[data-tab=review]")
    pg.locator("#conflicts tr").first.click()
    pg.wait_for_selector("#history li:has-text('replaced by its author')")
    old = pg.locator("#history li", has_text="replaced by its author")
    assert "pants" in old.inner_text() and old.locator("button").count() == 0
    assert pg.locator("#history li", has_text="t-shirt").locator("button").all_inner_texts() == ["accept", "reject"]
    assert "relabeled after review" in pg.inner_text("#current")
    pg.keyboard.press("a")  # a reviewer's key: accept the image's label
    pg.wait_for_selector("#history li:has-text('t-shirt'):has-text('accepted by root')")
    assert "relabeled after review" not in pg.inner_text("#current")
    ctx.close()
    with ws.session() as s:
        assert records.current_labels(s, [first.image_id]) == {first.image_id: ["t-shirt"]}  # ann's newest vote
        anns = s.scalars(select(Annotation).where(Annotation.image_id == first.image_id))
        assert [a.review for a in anns if a.labels == ["t-shirt"]] == ["accepted"]


def test_held_key_and_double_tap_label_only_images_on_screen(server, page, tmp_path, photos4):
    """Key auto-repeat and taps faster than a save never label an image twice or one that was never shown."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), slice(1, 4))
    import_dataset(ws, labeled, "burst")
    import_dataset(ws, folder, "burst")
    with ws.session() as s:
        ids = [it.image_id for it in records.items(s, records.get_dataset(s, "burst"), labeled=False)]
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")
    label_unlabeled(pg, "burst", 12)

    pg.keyboard.down("2")  # held: one keydown, then auto-repeats
    for _ in range(6):
        pg.keyboard.down("2")
        pg.wait_for_timeout(40)
    pg.keyboard.up("2")
    pg.wait_for_selector("#pos:has-text('2 / 12')")
    pg.wait_for_timeout(500)  # any stray save would have landed by now
    assert "2 / 12" in pg.inner_text("#pos")
    assert [(a.image_id, a.labels) for a in human(ws) if a.image_id in ids] == [(ids[0], ["pants"])]

    for _ in range(3):  # taps with no wait between them: each lands on the image shown when it was pressed
        pg.keyboard.press("3")
    pg.wait_for_timeout(800)
    rows = [a for a in human(ws) if a.image_id in ids]
    labeled = [a.image_id for a in rows]
    assert len(labeled) == len(set(labeled)), "an image was labeled twice"
    assert labeled == ids[:len(labeled)], "an image was skipped"  # contiguous from the first image
    shown = int(pg.inner_text("#pos").split(" / ")[0])
    assert shown == len(labeled) + 1 and all(a.labels == ["shoes"] for a in rows[1:])
    ctx.close()

    # a viewer sees the grid but not the buttons that would answer 403
    with ws.session() as s:
        users.create_user(s, "vic", "viewer", "vic-pw")
    ctx, pg = logged_in_page(page, base, "vic", "vic-pw")
    for sel in ("#train-btn", "#accept-btn", "#bulk-btn", "#bulk-class", "#threshold", "#autotrain-btn"):
        assert not pg.is_visible(sel), sel
    assert pg.is_visible("#export-ls") and pg.is_visible("#apply-filters")
    pg.locator("#grid .card img").first.click()  # the image view is read-only for them
    pg.wait_for_selector("#image-view:not([hidden])")
    assert not pg.is_visible("#save-btn") and pg.locator("#picker input:not([disabled])").count() == 0
    before = len(human(ws))
    pg.keyboard.press("1")
    pg.wait_for_selector("#image-msg:has-text('Viewers cannot label')")
    assert len(human(ws)) == before
    ctx.close()


def test_a_refresh_after_a_job_never_moves_a_label_onto_another_image(server, page, tmp_path, photos4):
    """A job that finishes while someone labels refreshes the image on screen. If its answer arrives after they moved
    on, it must not bring the previous image back under the next one's picture: the next key would label it."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 6), slice(6, 9))
    import_dataset(ws, labeled, "race")
    import_dataset(ws, folder, "race")
    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    seen = {"done": False, "held": None, "train": None}

    def jobs(route):  # the job list is the server's: a job of an earlier test may still run and end meanwhile
        res = route.fetch()
        ours = [j for j in res.json() if j["kind"] == "train" and j["params"].get("dataset") == "race"]
        seen["train"] = ours[0] if ours else None
        seen["done"] = seen["train"] is not None and seen["train"]["status"] not in ("queued", "running")
        route.fulfill(response=res)

    def image(route):  # hold the first image request after the job ended: the refresh
        if seen["done"] and seen["held"] is None and route.request.method == "GET":
            seen["held"] = route
            return
        route.continue_()

    pg.route("**/api/jobs", jobs)
    pg.route(re.compile(r".*/api/images/\d+$"), image)
    pg.select_option("#dataset", "race")
    pg.select_option("#f-status", "unlabeled")
    pg.click("#apply-filters")
    pg.wait_for_function("document.querySelector('#count').textContent === '12 images'")
    pg.select_option("#train-model", "tf_efficientnet_lite0")
    pg.click("#train-btn")
    pg.wait_for_selector("#grid-msg:has-text('Training started')")
    pg.locator("#grid .card img").first.click()
    pg.wait_for_selector("#pos:has-text('1 / 12')")
    first = pg.get_attribute("#big", "alt")
    deadline = time.time() + 240
    while seen["held"] is None and time.time() < deadline:
        pg.wait_for_timeout(200)
    assert seen["held"] is not None, "the job did not finish"
    assert seen["train"]["status"] == "done", seen["train"]["error"]
    pg.keyboard.press("1")  # labels the image on screen while the refresh is on its way
    pg.wait_for_selector("#pos:has-text('2 / 12')")
    second = pg.get_attribute("#big", "alt")
    seen["held"].continue_()  # the refresh of the first image arrives late
    pg.wait_for_timeout(800)
    assert "none" in pg.inner_text("#current-labels") and pg.get_attribute("#big", "alt") == second
    pg.keyboard.press("2")
    pg.wait_for_selector("#pos:has-text('3 / 12')")
    pg.unroute("**/api/jobs")
    pg.reload()
    pg.select_option("#dataset", "race")  # opens on the backbone it was last trained on
    pg.wait_for_function("document.querySelector('#train-model').value === 'tf_efficientnet_lite0'")
    ctx.close()
    with ws.session() as s:
        ds = records.get_dataset(s, "race")
        by_name = {Path(it.path).name: list(it.labels) for it in records.items(s, ds)}
        run_model = records.latest_run(s, ds).model
    assert by_name[first] == ["hat"] and by_name[second] == ["pants"]
    assert run_model == "tf_efficientnet_lite0"  # the backbone picked beside the Train button


def test_a_job_on_another_dataset_leaves_the_labeling_view_alone(server, page, tmp_path, photos4):
    """Someone trains on another dataset while an annotator labels. When that job ends, the annotator's view does not
    say "Retrained" or fetch their image again: their dataset's model did not change."""
    base, ws = server
    import_dataset(ws, copy_photos(photos4, tmp_path / "busy", slice(0, 3), slice(0, 0))[0], "busy")
    labeled, folder = copy_photos(photos4, tmp_path / "calm", slice(3, 6), slice(6, 8))
    import_dataset(ws, labeled, "calm")
    import_dataset(ws, folder, "calm")
    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    body = {"dataset": "busy", "mode": "finetune", "img_size": 32, "epochs": 1000, "time_budget": 6}
    job = pg.request.post(f"{base}/api/train", data=body, headers={"X-Requested-With": "pixclass"}).json()
    status = lambda: pg.request.get(f"{base}/api/jobs/{job['id']}").json()["status"]  # noqa: E731
    pg.reload()  # the page sees the job running and follows it
    pg.wait_for_selector("#job-strip:has-text('train')")
    label_unlabeled(pg, "calm", 8)
    fetched = []
    pg.on("request", lambda r: fetched.append(r.url) if re.search(r"/api/images/\d+$", r.url) else None)
    pg.keyboard.press("1")
    pg.wait_for_selector("#image-msg:has-text('Saved hat')")
    pg.wait_for_selector("#pos:has-text('2 / 8')")
    pg.wait_for_timeout(300)
    assert status() == "running"  # else this test shows nothing
    seen = len(fetched)
    deadline = time.time() + 120
    while status() == "running" and time.time() < deadline:
        pg.wait_for_timeout(300)
    assert status() == "done"
    pg.wait_for_selector("#job-strip:empty", state="attached")
    pg.wait_for_timeout(500)
    assert "Saved hat" in pg.inner_text("#image-msg") and "2 / 8" in pg.inner_text("#pos") and len(fetched) == seen
    ctx.close()


def test_a_new_workspace_says_what_to_do_and_an_admin_starts_a_dataset_in_the_ui(page, tmp_path, photos4):
    """No dataset yet: the page says how to start instead of failing in script, and an admin goes from an empty
    dataset to classes, uploads and a first label without the command line."""
    ws = Workspace.open(tmp_path / "ws")
    with ws.session() as s:
        users.create_user(s, "boss", "admin", "boss-pw")
    running = serve(ws)
    base, _ = next(running)
    ctx = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(20_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(base)
        pg.fill("#login-name", "boss")
        pg.fill("#login-password", "boss-pw")
        pg.click("#login-submit")
        pg.wait_for_selector("#grid-msg:has-text('No dataset yet: import a folder or create an empty dataset')")
        pg.click("#train-btn")
        pg.wait_for_selector("#grid-msg:has-text('No dataset yet')")
        for tab in ("classes", "review"):
            pg.click(f"button[data-tab={tab}]")
            pg.wait_for_selector(f"#{tab}-msg:has-text('No dataset yet')")

        pg.click("button[data-tab=admin]")
        pg.fill("#create-name", "shop")
        pg.click("#create-btn")
        pg.wait_for_selector("#admin-msg:has-text('Created shop (multiclass)')")
        pg.click("button[data-tab=grid]")
        pg.wait_for_selector("#grid-msg:has-text('has no classes yet: create them in the Classes tab')")
        pg.click("button[data-tab=classes]")
        pg.fill("#new-classes", "hat\nshoes")
        pg.click("#add-classes")
        pg.wait_for_selector("#classes-msg:has-text('Created 2 classes')")
        pg.click("button[data-tab=admin]")
        pg.set_input_files("#upload-files", [str(sorted((photos4 / c).glob("*.jpg"))[0]) for c in ("hat", "shoes")])
        pg.click("#upload-btn")
        pg.wait_for_selector("#admin-msg:has-text('Uploaded 2 images to shop')")
        pg.click("button[data-tab=grid]")
        pg.wait_for_selector("#count:has-text('2 images')")
        assert "no classes yet" not in pg.inner_text("#grid-msg")  # they exist now: the warning went
        pg.locator("#grid .card img").first.click()
        pg.wait_for_selector("#pos:has-text('1 / 2')")
        pg.keyboard.press("Enter")  # nothing picked yet: said, not sent
        pg.wait_for_selector("#image-msg:has-text('Pick a class first')")
        pg.keyboard.press("1")
        pg.wait_for_selector("#image-msg:has-text('Saved hat')")
        assert errors == []
    finally:
        ctx.close()
        next(running, None)
    with ws.session() as s:
        assert [(it.labels, Path(it.path).parent.name) for it in records.items(s, records.get_dataset(s, "shop"))
                if it.labels] == [(("hat",), "shop")]


def test_reload_keeps_dataset_filters_and_image(server, page, tmp_path, photos4):
    """F5 while labeling keeps the place: the URL hash holds the dataset (a name with spaces, an accent and '&'), the
    filters, the grid page and the image, and a reload opens them again; what the hash names that no longer exists, or
    never did, is said or ignored, never a script error."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), slice(1, 4))
    name = "été hats & co"
    import_dataset(ws, labeled, name)
    import_dataset(ws, folder, name)
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    entries = pg.evaluate("history.length")
    try:
        pg.select_option("#dataset", name)
        pg.wait_for_selector("#count:has-text('16 images')")
        pg.select_option("#f-status", "unlabeled")
        pg.select_option("#f-excluded", "hide")
        pg.click("#apply-filters")
        pg.wait_for_selector("#count:has-text('12 images')")
        pg.locator("#grid .card img").nth(1).click()
        pg.wait_for_selector("#pos:has-text('2 / 12')")
        pos, alt = pg.inner_text("#pos"), pg.get_attribute("#big", "alt")
        image_id = int(pos.split("#")[1].split()[0])
        pg.wait_for_function(f"location.hash.includes('image={image_id}')")  # replaced, not pushed
        assert pg.evaluate("history.length") == entries

        pg.reload()  # the log-in cookie persists: straight back to the same image, filters and dataset
        pg.wait_for_selector("#image-view:not([hidden])")
        pg.wait_for_function("s => document.querySelector('#pos').textContent === s", arg=pos)
        assert pg.get_attribute("#big", "alt") == alt and pg.is_hidden("#login-view")
        assert (pg.input_value("#dataset"), pg.input_value("#f-status"), pg.input_value("#f-excluded")) == (
            name, "unlabeled", "hide")
        pg.keyboard.press("ArrowRight")  # the keys still work on the restored list
        pg.wait_for_selector("#pos:has-text('3 / 12')")

        pg.keyboard.press("Escape")
        pg.wait_for_function("!location.hash.includes('image=')")
        pg.reload()
        pg.wait_for_selector("#grid .card")
        pg.wait_for_selector("#count:has-text('12 images')")
        assert pg.is_hidden("#image-view") and pg.input_value("#f-status") == "unlabeled"
        assert pg.input_value("#dataset") == name

        # an image labeled meanwhile has left the "unlabeled" list: the grid, saying so
        pg.locator("#grid .card img").first.click()
        pg.wait_for_selector("#pos:has-text('1 / 12')")
        first = int(pg.inner_text("#pos").split("#")[1].split()[0])
        pg.wait_for_function(f"location.hash.includes('image={first}')")
        with ws.session() as s:
            s.add(Annotation(image_id=first, labels=["hat"], source="human", author="bob"))
        pg.reload()
        pg.wait_for_selector(f"#grid-msg:has-text('Image #{first} is no longer in this list')")
        pg.wait_for_selector("#count:has-text('11 images')")
        assert pg.is_hidden("#image-view")

        # a link to the second page of another dataset, and a hash of nonsense
        pg.goto("about:blank")
        pg.goto(f"{base}/#ds=cloth&offset=60&sort=-confidence")
        pg.wait_for_selector("#page-info:has-text('61-92 of 92')")
        assert (pg.input_value("#dataset"), pg.input_value("#f-status"), pg.input_value("#f-sort")) == (
            "cloth", "", "-confidence")
        pg.goto("about:blank")
        pg.goto(f"{base}/#ds=cloth&tab=jobs")  # a tab, too
        pg.wait_for_selector("#jobs-view:not([hidden]) #jobs tbody tr")
        pg.goto("about:blank")
        pg.goto(f"{base}/#ds=cloth&status=bogus&min=7&sort=%&offset=-5&image=abc&tab=%E0%A4%A&conflicts=yes&x=1")
        pg.wait_for_selector("#page-info:has-text('1-60 of 92')")
        assert (pg.input_value("#f-status"), pg.input_value("#f-min"), pg.input_value("#f-sort"),
                pg.is_checked("#f-conflicts")) == ("", "", "id", False)
        pg.goto("about:blank")
        pg.goto(f"{base}/#ds=nope&image={image_id}")
        pg.wait_for_selector("#grid-msg:has-text('There is no dataset \"nope\"')")
        pg.wait_for_selector("#grid .card")
        assert pg.is_hidden("#image-view")
        assert errors == []
    finally:
        ctx.close()


def press_and_move(pg, key: str) -> None:
    """Press a key in the image view and wait until it shows another image."""
    before = pg.inner_text("#pos")
    pg.keyboard.press(key)
    pg.wait_for_function("t => document.querySelector('#pos').textContent !== t", arg=before)


def on_one_queue(page, base: str, dataset: str, who: tuple[str, ...], images: int) -> list:
    """(context, page) per user, each logged in (password NAME-pw) and showing the dataset's random label queue."""
    pages = []
    for name in who:
        ctx, pg = logged_in_page(page, base, name, f"{name}-pw")
        pg.select_option("#dataset", dataset)
        pg.select_option("#f-sort", "queue:random")
        pg.click("#apply-filters")
        pg.wait_for_selector(f"#count:has-text('{images} images')")
        pages.append((ctx, pg))
    return pages


def ann_and_cy_on_a_new_queue(server, page, tmp_path, photos4, dataset: str, photos: slice):
    """A new dataset of 4 unlabeled photos (one per class, ``photos`` of each class folder), and ann and the
    annotator cy on its random queue: (ws, (context, page) of ann, of cy)."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), photos)
    import_dataset(ws, labeled, dataset)
    import_dataset(ws, folder, dataset)
    with ws.session() as s:
        users.create_user(s, "cy", "annotator", "cy-pw", replace=True)
    return ws, *on_one_queue(page, base, dataset, ("ann", "cy"), 4)


def votes_in(ws: Workspace, dataset: str) -> dict[int, list[str]]:
    """image id -> authors of its human annotations, in the dataset."""
    with ws.session() as s:
        ids = {it.image_id for it in records.items(s, records.get_dataset(s, dataset))}
    out: dict[int, list[str]] = {}
    for a in human(ws):
        if a.image_id in ids:
            out.setdefault(a.image_id, []).append(a.author)
    return out


def test_two_annotators_on_one_queue_label_different_images(server, page, tmp_path, photos4):
    """Two annotators open the same "next to label" queue at once. Each image one of them has open is left out of
    the other's queue, marked in the grid, and passed over by the other's saves and arrows, so no image is labeled
    twice; going back to the grid lets the last one go. With two votes per image, the other's images come back."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), slice(1, 4))
    import_dataset(ws, labeled, "team")
    import_dataset(ws, folder, "team")
    with ws.session() as s:
        users.create_user(s, "bea", "annotator", "bea-pw")
        ds_id = records.get_dataset(s, "team").id
    (ctx_a, a), (ctx_b, b) = on_one_queue(page, base, "team", ("ann", "bea"), 12)  # the same images, same order
    second = a.locator("#grid .card").nth(1).get_attribute("data-id")  # ann's next image
    a.locator("#grid .card img").first.click()
    a.wait_for_selector("#pos:has-text('1 / 12')")
    first = a.get_attribute("#big", "alt")
    b.select_option("#f-sort", "id")  # the grid by id shows who has which image open
    b.click("#apply-filters")
    b.wait_for_selector("#grid .card .claimed:has-text('ann is labeling it')")
    assert b.locator("#grid .card .claimed").count() == 1
    b.locator("#grid .card:has(.claimed) img").click()  # opened by hand: shown, with who has it
    b.wait_for_selector("#claimed-by:has-text('ann is labeling this image now')")
    assert b.get_attribute("#big", "alt") == first
    b.keyboard.press("Escape")
    b.wait_for_selector("#grid-view:not([hidden])")
    b.locator(f"#grid .card[data-id='{second}'] img").click()  # bea opens ann's next image
    b.wait_for_selector(f"#pos:has-text('#{second} ')")

    press_and_move(a, "1")  # ann labels the first; her next is the one bea has open: passed over
    assert a.inner_text("#pos").startswith("3 / 12") and "passed over 1 image" in a.inner_text("#pos")
    b.keyboard.press("2")  # bea labels it, then works from her own queue, which leaves out ann's image
    b.wait_for_selector("#image-msg:has-text('Saved')")
    b.keyboard.press("Escape")
    b.wait_for_selector("#grid-view:not([hidden])")
    b.select_option("#f-sort", "queue:random")
    b.click("#label-next")
    b.wait_for_selector("#pos:has-text('1 / 9')")  # 12, less 2 labeled and the one ann has open
    for _ in range(3):
        press_and_move(b, "2")
        press_and_move(a, "1")
    with a.expect_response(lambda r: r.url.endswith("/claim") and r.request.method == "DELETE"):
        a.keyboard.press("Escape")
    a.wait_for_selector("#grid-view:not([hidden])")
    ctx_a.close()
    ctx_b.close()

    votes = votes_in(ws, "team")
    held = claims.held_by_others(ws.engine, ds_id, "nobody")
    assert sum(map(len, votes.values())) == 8 and all(len(v) == 1 for v in votes.values()), votes
    assert sorted(v[0] for v in votes.values()) == ["ann"] * 4 + ["bea"] * 4
    assert list(held.values()) == ["bea"]  # ann went back to the grid: her last image is free

    # an admin asks for two votes per image: ann's images come back into bea's queue, and her moves stop at them
    ctx, root = logged_in_page(page, base, "root", "root-pw")
    root.select_option("#dataset", "team")
    root.wait_for_selector("#count:has-text('16 images')")
    assert root.input_value("#votes") == "1"
    root.fill("#votes", "2")
    root.click("#votes-btn")
    root.wait_for_selector("#grid-msg:has-text('2 annotators')")
    ctx.close()
    ctx, b = logged_in_page(page, base, "bea", "bea-pw")
    b.select_option("#dataset", "team")
    b.click("#label-next")  # the margin queue: in diversity order, as no model is trained yet
    b.wait_for_selector("#pos:has-text('1 / 8')")  # 4 unlabeled and ann's 4
    assert b.input_value("#f-sort") == "queue:margin"
    for i in range(7):
        press_and_move(b, "1")
        assert b.inner_text("#pos").startswith(f"{i + 2} / 8"), b.inner_text("#pos")
    ctx.close()
    votes = votes_in(ws, "team")
    assert sum(sorted(v) == ["ann", "bea"] for v in votes.values()) >= 3  # at least 3 of ann's 4 among the 7 labeled


def test_the_end_of_a_queue_never_shows_an_image_someone_else_has_open(server, page, tmp_path, photos4):
    """Past its last free image a queue is loaded again, without others' claims and answers; when nothing is left,
    the grid says so. The image another annotator has open is never shown to label, not even as the last one."""
    ws, (ctx_a, a), (ctx_c, c) = ann_and_cy_on_a_new_queue(server, page, tmp_path, photos4, "tail", slice(4, 5))
    c.locator("#grid .card img").nth(3).click()  # cy opens the last image of the queue both of them loaded
    c.wait_for_selector("#pos:has-text('4 / 4')")
    a.locator("#grid .card img").first.click()
    a.wait_for_selector("#pos:has-text('1 / 4')")
    press_and_move(a, "1")
    press_and_move(a, "2")
    a.keyboard.press("3")  # her last free image: next is cy's, then the queue again, empty
    a.wait_for_selector("#grid-msg:has-text('Nothing left to label in this queue')")
    assert a.is_visible("#grid-view") and not a.is_visible("#image-view")
    c.keyboard.press("4")
    c.wait_for_selector("#grid-msg:has-text('Nothing left to label in this queue')")
    ctx_a.close()
    ctx_c.close()
    votes = votes_in(ws, "tail")
    assert sorted(map(tuple, votes.values())) == [("ann",)] * 3 + [("cy",)], votes


def test_a_claim_that_answers_late_still_sees_the_label_given_meanwhile(server, page, tmp_path, photos4):
    """Cy moves back onto the image ann is labeling, and cy's claim is held up until ann has saved it and moved on.
    The claim then succeeds, but the image is read after it, so cy's page sees ann's label and does not offer it."""
    import re

    ws, (ctx_a, a), (ctx_c, c) = ann_and_cy_on_a_new_queue(server, page, tmp_path, photos4, "late", slice(5, 6))
    c.locator("#grid .card img").nth(1).click()
    c.wait_for_selector("#pos:has-text('2 / 4')")
    a.locator("#grid .card img").first.click()
    a.wait_for_selector("#pos:has-text('1 / 4')")
    first = a.get_attribute("#big", "alt")
    held = []
    c.route(re.compile(r".*/api/images/\d+/claim$"),
            lambda route: held.append(route) if route.request.method == "POST" and not held else route.continue_())
    c.keyboard.press("ArrowLeft")  # back onto ann's image: the claim waits
    deadline = time.time() + 20
    while not held and time.time() < deadline:
        c.wait_for_timeout(50)
    assert held, "the claim was not sent"
    press_and_move(a, "1")  # ann labels it and moves on, past cy's image: hers is free now
    assert a.inner_text("#pos").startswith("3 / 4")
    held[0].continue_()
    c.wait_for_selector("#image-msg:has-text('Every earlier image is open or labeled by someone else')")
    assert c.inner_text("#pos").startswith("2 / 4") and c.get_attribute("#big", "alt") != first
    c.keyboard.press("2")
    c.wait_for_selector("#image-msg:has-text('Saved')")
    ctx_a.close()
    ctx_c.close()
    votes = votes_in(ws, "late")
    assert sorted(map(tuple, votes.values())) == [("ann",), ("cy",)], votes


def test_start_labeling_takes_the_whole_queue_and_leaving_by_a_tab_lets_the_claim_go(server, page, tmp_path, photos4):
    """"Start labeling" clears a filter left from earlier work (within it the queue would be empty); leaving the
    image view by a tab or by logging out, not only by Escape, gives the image back to the others' queues."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), slice(6, 7))
    import_dataset(ws, labeled, "tabs")
    import_dataset(ws, folder, "tabs")
    with ws.session() as s:
        ds_id = records.get_dataset(s, "tabs").id
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")
    pg.select_option("#dataset", "tabs")
    pg.wait_for_selector("#count:has-text('8 images')")
    pg.select_option("#f-label", "hat")  # a filter left from earlier work: the queue would be empty within it
    pg.click("#apply-filters")
    pg.wait_for_selector("#count:has-text('1 image')")
    pg.click("#label-next")
    pg.wait_for_selector("#pos:has-text('1 / 4')")
    assert pg.input_value("#f-label") == "" and pg.input_value("#f-sort") == "queue:margin"
    shown = int(pg.inner_text("#pos").split("#")[1].split(" ")[0])
    assert claims.held_by_others(ws.engine, ds_id, "nobody") == {shown: "ann"}
    with pg.expect_response(lambda r: r.url.endswith("/claim") and r.request.method == "DELETE"):
        pg.click("button[data-tab='jobs']")
    assert claims.held_by_others(ws.engine, ds_id, "nobody") == {}
    pg.click("button[data-tab='grid']")
    pg.click("#label-next")
    pg.wait_for_selector("#pos:has-text('1 / 4')")
    assert len(claims.held_by_others(ws.engine, ds_id, "nobody")) == 1
    pg.click("#logout")  # logging out gives it back too
    pg.wait_for_selector("#login-view:not([hidden])")
    assert claims.held_by_others(ws.engine, ds_id, "nobody") == {}
    ctx.close()


def test_start_labeling_right_after_switching_dataset_opens_the_new_one(server, page, tmp_path, photos4):
    """"Start labeling" pressed while the chosen dataset's details still load waits for them: it never opens (and
    so labels) an image of the dataset shown before."""
    base, ws = server
    labeled, folder = copy_photos(photos4, tmp_path, slice(0, 1), slice(8, 9))
    import_dataset(ws, labeled, "slow")
    import_dataset(ws, folder, "slow")
    with ws.session() as s:
        slow = set(s.scalars(select(Image.id).where(Image.dataset_id == records.get_dataset(s, "slow").id)))
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")
    assert pg.input_value("#dataset") != "slow"
    pg.evaluate("""() => { const f = window.fetch; window.fetch = async (u, o) => {
        if (String(u).endsWith('/api/datasets/slow')) await new Promise((r) => setTimeout(r, 1500));
        return f(u, o); }; }""")
    pg.select_option("#dataset", "slow")
    pg.click("#label-next")
    pg.wait_for_selector("#pos:has-text(' / 4 ')")
    assert int(pg.inner_text("#pos").split("#")[1].split(" ")[0]) in slow
    ctx.close()


def test_a_queue_reordered_while_labeling_never_asks_again_for_an_image_just_labeled(server, page, tmp_path, photos4):
    """Diversity order waits for the images to be embedded (a job); when the job ends while the annotator labels,
    the queue goes on in the new order from its first image, and passes over the images she labeled meanwhile:
    each image gets one label."""
    base, ws = server
    labeled, _ = copy_photos(photos4, tmp_path, slice(0, 1), slice(0, 0))
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(7)
    for i in range(70):  # more than a request embeds itself, none embedded yet
        PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise / f"n{i:02d}.png")
    import_dataset(ws, labeled, "reorder")
    import_dataset(ws, noise, "reorder")
    ctx, pg = logged_in_page(page, base, "ann", "ann-pw")
    pg.select_option("#dataset", "reorder")
    pg.wait_for_selector("#count:has-text('74 images')")
    pg.evaluate("""() => { const f = window.fetch; let n = 0; window.fetch = async (u, o) => {
        if (String(u).endsWith('/api/jobs') && n++ === 0) await new Promise((r) => setTimeout(r, 2500));
        return f(u, o); }; }""")  # the job's end is seen after a few labels
    pg.click("#label-next")
    pg.wait_for_selector("#pos:has-text('1 / 70')")
    press_and_move(pg, "1")
    press_and_move(pg, "1")
    for _ in range(300):  # the job ends while she looks at her third image, and the page hears of it
        jobs = pg.evaluate("fetch('/api/jobs').then((r) => r.json())")
        if not [j for j in jobs if j["status"] in ("queued", "running")]:
            break
        time.sleep(0.1)
    time.sleep(1.5)
    seen = []
    for _ in range(150):
        before = pg.inner_text("#pos")
        seen.append(f"{before} {pg.inner_text('#image-msg')}")
        pg.keyboard.press("1")
        pg.wait_for_function("t => document.querySelector('#pos').textContent !== t || "
                             "document.querySelector('#image-view').hidden", arg=before)
        if pg.is_hidden("#image-view"):
            break
    pg.wait_for_selector("#grid-msg:has-text('Nothing left to label')")
    ctx.close()
    votes = votes_in(ws, "reorder")
    twice = {i: v for i, v in votes.items() if v != ["ann"]}
    assert len(votes) == 70 and not twice, twice
    assert any("diversity order" in p for p in seen)  # the queue was reordered while she labeled


def test_a_hierarchical_image_opens_on_the_branch_the_model_is_sure_of(server, page, taxonomy_tree):
    """When the model is sure of a branch ("accessory") but not of a leaf, and the digits cannot reach every class,
    the taxonomy search opens on that branch: the digits pick among its classes, and the page says why. With ten
    classes or fewer the digits keep their meaning from image to image."""
    from fastapi.testclient import TestClient

    from pixclass.config import TrainConfig
    from pixclass.server import create_app
    from pixclass.train.run import train

    base, ws = server
    import_dataset(ws, taxonomy_tree, "branches")
    train(ws, "branches", TrainConfig(mode="linear", img_size=64, node_threshold=0.99))
    with ws.session() as s:
        token = users.create_token(s, users.find_user(s, "root"))
    api = TestClient(create_app(ws), headers={"Authorization": f"Bearer {token}"})
    job = api.post("/api/datasets/branches/prelabel", json={}).json()["id"]
    for _ in range(600):
        if api.get(f"/api/jobs/{job}").json()["status"] == "done":
            break
        time.sleep(0.1)
    ids = api.get("/api/datasets/branches/images").json()["ids"]
    sure = next(d for d in (api.get(f"/api/images/{i}").json() for i in ids)
                if d["confident"] and "/" not in d["confident"]["node"])
    branch = sure["confident"]["node"]

    ctx, pg = logged_in_page(page, base, "root", "root-pw")
    pg.goto(f"{base}/#ds=branches&image={sure['id']}")  # the page reloads itself on a new link
    pg.wait_for_selector(f"#confident:has-text('Most likely branch: {branch}')")
    assert pg.input_value("#taxonomy-search") == ""  # four classes: every digit reaches one
    extra = [f"{parent}/{c}" for parent in ("accessory", "clothes") for c in ("belt", "scarf", "glove", "sock")]
    assert api.post("/api/datasets/branches/classes", json={"names": extra}).status_code == 200
    pg.reload()  # twelve classes now
    pg.wait_for_selector("#confident:has-text('the digits pick among its classes')")
    assert pg.input_value("#taxonomy-search") == f"{branch}/"
    first_leaf = pg.locator("#picker label").first.inner_text()
    assert first_leaf.endswith(f"{branch}/hat") or first_leaf.endswith(f"{branch}/pants")
    pg.keyboard.press("1")
    pg.wait_for_selector("#image-msg:has-text('Saved')")
    ctx.close()
    newest = human(ws)[-1]
    assert newest.image_id == sure["id"] and newest.labels[0].startswith(f"{branch}/")
