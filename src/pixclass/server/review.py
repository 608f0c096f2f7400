"""Collaboration: agreement per image and per annotator pair, conflicts, and reviewer accept/reject."""

from __future__ import annotations

import itertools
import statistics

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from pixclass.server import views
from pixclass.server.auth import Principal, require
from pixclass.store import records
from pixclass.store.tables import utcnow

router = APIRouter(prefix="/api", tags=["review"])


def pair_agreement(rows: list[views.Row]) -> list[dict]:
    """For each pair of annotators: images both labeled, fraction with identical labels, Cohen's kappa."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in rows:
        for a, b in itertools.combinations(sorted(r.by_author), 2):
            pairs.setdefault((a, b), []).append(("|".join(sorted(r.by_author[a])), "|".join(sorted(r.by_author[b]))))
    out = []
    for (a, b), labs in sorted(pairs.items()):
        ya, yb = [x for x, _ in labs], [y for _, y in labs]
        agree = sum(x == y for x, y in labs) / len(labs)
        out.append({"a": a, "b": b, "images": len(labs), "agreement": round(agree, 4), "kappa": _kappa(ya, yb)})
    return out


def _kappa(ya: list[str], yb: list[str]) -> float | None:
    cats = sorted(set(ya) | set(yb))
    n = len(ya)
    if n == 0 or len(cats) < 2:
        return None
    po = sum(x == y for x, y in zip(ya, yb)) / n
    pe = sum((ya.count(c) / n) * (yb.count(c) / n) for c in cats)
    return round((po - pe) / (1 - pe), 4) if pe < 1 else None


def annotator_stats(anns_by_image: dict[int, list]) -> list[dict]:
    """Per annotator (human labels only), from ``records.annotations_by_image``: images they labeled (their newest
    vote each), labels given in all (replaced ones too), verdicts on their newest votes, accepted model suggestions,
    time spent (total and median, seconds), and ``agreement_with_others``: on images someone else voted on too, the
    share of the others' votes that match theirs, averaged over those images (None when they labeled no such
    image). Rejected votes count nowhere here, as in the pair agreement."""
    per: dict[str, dict] = {}
    times: dict[str, list[float]] = {}
    for anns in anns_by_image.values():
        newest = records.newest_per_author(anns)
        votes = [a for a in newest if a.source == "human"]
        live = [a for a in votes if a.review != "rejected"]
        for a in anns:
            if a.source == "human":
                st = per.setdefault(a.author, {"annotator": a.author, "images": 0, "labels": 0, "accepted": 0,
                                               "rejected": 0, "pending": 0, "accepted_suggestions": 0,
                                               "shared_images": 0, "agreed": 0.0})
                st["labels"] += 1
                if a.time_spent is not None:
                    times.setdefault(a.author, []).append(float(a.time_spent))
        for a in votes:
            st = per[a.author]
            st["images"] += 1
            st[a.review or "pending"] += 1
            st["accepted_suggestions"] += a.from_run is not None
            others = [b for b in live if b.author != a.author]
            if a.review != "rejected" and others:
                st["shared_images"] += 1
                st["agreed"] += sum(sorted(b.labels) == sorted(a.labels) for b in others) / len(others)
    out = []
    for who, st in sorted(per.items()):
        ts, agreed = times.get(who, []), st.pop("agreed")
        out.append({**st, "time_spent_total": round(sum(ts), 1),
                    "time_spent_median": round(statistics.median(ts), 2) if ts else None,
                    "agreement_with_others": round(agreed / st["shared_images"], 4) if st["shared_images"] else None})
    return out


@router.get("/datasets/{name}/annotators")
def annotators(name: str, request: Request, _: Principal = Depends(require("viewer"))) -> list[dict]:
    """Per annotator: images labeled, labels given, accepted / rejected / pending verdicts on their current votes,
    accepted model suggestions, time spent (total, median), and agreement with the others who labeled the same
    images."""
    with request.app.state.ws.session() as s:
        return annotator_stats(records.annotations_by_image(s, dataset=records.get_dataset(s, name)))


@router.get("/datasets/{name}/agreement")
def agreement(name: str, request: Request, _: Principal = Depends(require("viewer"))) -> dict:
    """Agreement between annotators: per pair, and a summary over images labeled by two or more people."""
    with request.app.state.ws.session() as s:
        rows = list(request.app.state.tables.get(s, records.get_dataset(s, name)).values())
    multi = [r for r in rows if len(r.by_author) >= 2]
    per_image = [r.agreement for r in multi]
    return {"images_multi": len(multi), "conflicts": sum(r.conflict for r in multi),
            "mean_image_agreement": round(sum(per_image) / len(per_image), 4) if per_image else None,
            "pairs": pair_agreement(rows),
            "annotators": sorted({a for r in rows for a in r.by_author})}


@router.get("/datasets/{name}/conflicts")
def conflicts(name: str, request: Request, _: Principal = Depends(require("viewer"))) -> list[dict]:
    """Images where annotators disagree, with every annotator's labels: nothing is hidden or dropped."""
    with request.app.state.ws.session() as s:
        rows = request.app.state.tables.get(s, records.get_dataset(s, name)).values()
    return [{**r.to_dict(), "by_author": r.by_author} for r in rows if r.conflict]


class ReviewBody(BaseModel):
    status: str = Field(pattern="^(accepted|rejected|pending)$")


@router.post("/annotations/{annotation_id}/review")
def review(annotation_id: int, body: ReviewBody, request: Request,
           user: Principal = Depends(require("admin"))) -> dict:
    """A reviewer (admin) accepts or rejects an annotation; 'pending' clears the verdict. The annotation stays."""
    with request.app.state.ws.session() as s:
        found = records.locked_annotations(s, [annotation_id])  # not while its author takes it back
        if not found:
            raise HTTPException(404, f"No annotation {annotation_id}: taken back by its author or deleted.")
        a = found[0]
        if body.status == "pending":
            a.review, a.reviewer, a.reviewed_at = None, None, None
        else:
            a.review, a.reviewer, a.reviewed_at = body.status, user.name, utcnow()
        s.flush()
        return views.annotation_dict(a)
