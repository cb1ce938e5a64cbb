"""Parallelism: one value for the five degrees, their scopes, validation and label."""

import pytest

from accelcal.planner.parallelism import Parallelism
from accelcal.planner.search import Rejection


def test_label_devices_and_scopes():
    p = Parallelism.with_scopes(8, 2, 4, 8, 1, {"tp": "intra_node", "pp": "inter_node", "ep": "intra_node",
                                               "sp": "intra_node"})
    assert p.label == "TP8 PP2 DP4 EP8" and p.model_label == "TP8 PP2 EP8"
    assert p.devices == 8 * 2 * 4 and p.scopes["pp"] == "inter_node"
    # a rejected model copy is named without DP, unless SP (which splits prompts over DP replicas) needs it named
    assert Rejection("g", Parallelism(tp=4, dp=2), "memory", "").label == "TP4 PP1"
    assert Rejection("g", Parallelism(tp=4, dp=2, sp=2), "memory", "").label == "TP4 PP1 DP2 SP2"


@pytest.mark.parametrize("kw, msg", [({"tp": 0}, "tp must be an integer >= 1, got 0"),
                                     ({"dp": 1.5}, "dp must be an integer >= 1, got 1.5"),
                                     ({"ep_scope": "rack"}, "ep_scope must be one of")])
def test_bad_degrees_and_scopes_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Parallelism(**kw)
