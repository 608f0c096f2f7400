"""The predictions CSV lists, after the decision, the best classes it did not decide: none is lost."""

import csv

from pixclass.inference.batch import write_predictions
from pixclass.inference.predictor import Prediction

TOP = (("dress", 0.9), ("hat", 0.8), ("shoes", 0.3))


def test_csv_top_columns_follow_the_decision(tmp_path):
    preds = [Prediction("one.jpg", "dress", 0.9, TOP, labels=("dress",)),  # single label: the top class
             Prediction("two.jpg", "dress|hat", 0.8, TOP, labels=("dress", "hat")),  # multi-label: two decided
             Prediction("three.jpg", "", 0.0, (("dress", 0.4), ("hat", 0.3)), labels=()),  # nothing passed
             Prediction("four.jpg", "hat", 0.8, TOP, labels=("hat",))]  # a threshold chose the second class
    rows = list(csv.DictReader(write_predictions(preds, tmp_path / "p.csv", k=3).open()))
    assert [(r["label"], r["top2_label"], r["top3_label"]) for r in rows] == [
        ("dress", "hat", "shoes"), ("dress|hat", "shoes", ""), ("", "dress", "hat"), ("hat", "dress", "shoes")]
