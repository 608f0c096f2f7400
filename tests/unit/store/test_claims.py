"""Claims on images (store.claims): one holder at a time, one claim per person and dataset, expiry, and on SQLite
and a real PostgreSQL server a race of many claimers where exactly one wins, and two people trading images at once."""

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from pixclass.io.importer import import_dataset
from pixclass.store import Workspace, claims, records
from pixclass.store.tables import Dataset, Image
from tests.integration.server_fixtures import tiny_source
from tests.pg import fresh_database


def _workspace(tmp_path, url: str | None = None) -> tuple[Workspace, int, list[int]]:
    ws = Workspace.open(tmp_path / "ws", url=url)
    import_dataset(ws, tiny_source(tmp_path / "src"), "tiny")
    with ws.session() as s:
        ds = records.get_dataset(s, "tiny")
        return ws, ds.id, [it.image_id for it in records.items(s, ds)]


def test_one_holder_one_claim_per_person_and_expiry(tmp_path):
    ws, ds, (a, b, c, _) = _workspace(tmp_path)
    first = claims.claim(ws.engine, ds, a, "ann")
    assert first.mine and first.user == "ann"
    taken = claims.claim(ws.engine, ds, a, "bob")
    assert not taken.mine and taken.user == "ann" and taken.until == first.until
    assert claims.held_by_others(ws.engine, ds, "bob") == {a: "ann"}
    assert claims.held_by_others(ws.engine, ds, "ann") == {}
    assert claims.holder(ws.engine, a, "bob").user == "ann" and claims.holder(ws.engine, a, "ann") is None
    assert claims.claim(ws.engine, ds, a, "ann").mine  # renewing one's own claim

    assert claims.claim(ws.engine, ds, b, "ann").mine  # the next image: the first one is free again
    assert claims.held_by_others(ws.engine, ds, "bob") == {b: "ann"}
    assert claims.claim(ws.engine, ds, a, "bob").mine

    assert claims.release(ws.engine, b, "ann") and not claims.release(ws.engine, b, "ann")
    assert not claims.release(ws.engine, a, "ann")  # bob's claim is not ann's to end
    assert claims.held_by_others(ws.engine, ds, "ann") == {a: "bob"}

    assert claims.claim(ws.engine, ds, c, "cat", minutes=-1).mine  # already expired: nobody holds it
    assert claims.holder(ws.engine, c, "ann") is None and c not in claims.held_by_others(ws.engine, ds, "ann")
    assert claims.claim(ws.engine, ds, c, "ann").mine

    with ws.session() as s:  # deleting an image or a dataset deletes its claims
        s.delete(s.get(Image, a))
    assert claims.held_by_others(ws.engine, ds, "ann") == {}
    with ws.session() as s:
        s.delete(s.get(Dataset, ds))
    with ws.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM image_claims")).scalar() == 0


def _race(ws: Workspace, ds: int, image_ids: list[int], people: int = 8) -> None:
    """``people`` threads claim each image at once: exactly one gets it, and everyone is told who."""
    with ThreadPoolExecutor(people) as pool:
        for image_id in image_ids:
            holds = list(pool.map(lambda who: claims.claim(ws.engine, ds, image_id, who),
                                  [f"u{i}" for i in range(people)]))
            winners = [h.user for h in holds if h.mine]
            assert len(winners) == 1, holds
            assert {h.user for h in holds} == set(winners)


def _swap(ws: Workspace, ds: int, x: int, y: int, times: int = 30) -> None:
    """a holds x and b holds y; at the same moment a claims y and b claims x. Neither gets the other's image, each
    is told who holds it, and neither call fails (on PostgreSQL such a trade used to deadlock)."""
    with ws.engine.begin() as conn:  # what an earlier race left
        conn.execute(text("DELETE FROM image_claims"))
    for _ in range(times):
        assert claims.claim(ws.engine, ds, x, "a").mine and claims.claim(ws.engine, ds, y, "b").mine
        barrier = threading.Barrier(2)

        def trade(who: str, image_id: int) -> claims.Hold:
            barrier.wait()
            return claims.claim(ws.engine, ds, image_id, who)

        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(trade, ["a", "b"], [y, x])
        assert (a.mine, a.user, b.mine, b.user) == (False, "b", False, "a")


def test_concurrent_claims_have_one_winner_on_sqlite(tmp_path):
    ws, ds, ids = _workspace(tmp_path)
    _race(ws, ds, ids)
    _swap(ws, ds, ids[0], ids[1])


def test_concurrent_claims_have_one_winner_on_postgresql(tmp_path, postgres_url):
    ws, ds, ids = _workspace(tmp_path, fresh_database(postgres_url, "pixclass_claims"))
    assert ws.engine.dialect.name == "postgresql"
    _race(ws, ds, ids)
    _swap(ws, ds, ids[0], ids[1])
    ws.close()
