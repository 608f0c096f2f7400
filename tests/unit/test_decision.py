import numpy as np

from pixclass.decision import decide, decode_hierarchical, node_probs
from pixclass.schema import LabelSchema

TAXO = LabelSchema.infer({"fruit/apple/gala", "fruit/apple/honeycrisp", "fruit/grape", "veg/kale"})


def test_uncertain_image_stops_at_the_parent():
    # classes: fruit/apple/gala, fruit/apple/honeycrisp, fruit/grape, veg/kale
    probs = np.array([
        [0.80, 0.10, 0.05, 0.05],  # confident gala
        [0.45, 0.40, 0.10, 0.05],  # apple for sure (0.85), variety unsure -> fruit/apple
        [0.25, 0.20, 0.30, 0.25],  # fruit 0.75 but no child reaches 0.5 -> fruit
        [0.20, 0.10, 0.15, 0.55],  # veg/kale
    ])
    got = [n for n, _ in decode_hierarchical(probs, TAXO, 0.5)]
    assert got == ["fruit/apple/gala", "fruit/apple", "fruit", "veg/kale"]
    nodes, npb = node_probs(probs, TAXO)
    for i, n in enumerate(nodes):  # a child never exceeds its parent
        if "/" in n:
            assert np.all(npb[:, i] <= npb[:, nodes.index(n.rsplit("/", 1)[0])] + 1e-9)


def test_multilabel_and_binary_decisions():
    ml = LabelSchema.infer({"a", "b", "c"}, "multilabel")
    probs = np.array([[0.9, 0.4, 0.2], [0.1, 0.2, 0.3]])
    assert [d[0] for d in decide(probs, ml, {"a": 0.5, "b": 0.35, "c": 0.5})] == [("a", "b"), ()]
    binary = LabelSchema.infer({"neg", "pos"})
    probs = np.array([[0.8, 0.2], [0.6, 0.4]])
    assert [d[0] for d in decide(probs, binary, {"pos": 0.3})] == [("neg",), ("pos",)]
    assert [d[0] for d in decide(probs, binary, {})] == [("neg",), ("neg",)]
