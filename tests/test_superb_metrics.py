"""SUPERB metrics against values computed by hand on tiny inputs."""

import csv
import math

import numpy as np
import pytest

from speechbrain_ext.superb import metrics as M

# 2 queries × 3 documents. Query 0 has 1 target and 2 non-targets; query 1 has 2 and 1.
SCORES = np.array([[3.0, 1.0, 2.0], [0.5, 2.5, 1.5]])
TARGETS = np.array([[True, False, False], [False, True, True]])


def test_twv_constants():
    assert M.NIST_STD_2006_BETA == pytest.approx(999.9)
    assert M.QUESST_BETA == pytest.approx(12.49)


@pytest.mark.parametrize(
    ("beta", "expected", "threshold"),
    [
        # θ = 2.5: q0 hit, q1 1 hit of 2, no false alarm -> 1 - (0 + 0.5) / 2.
        (1.0, 0.75, 2.5),
        # θ = 1.5: no miss; q0 has 1 false alarm of its 2 non-targets -> 1 - 0.1 * 0.5 / 2.
        # (dividing by all 3 trials instead of the 2 non-targets would give 0.98333)
        (0.1, 0.975, 1.5),
        (M.QUESST_BETA, 0.75, 2.5),
    ],
)
def test_mtwv_hand_computed(beta, expected, threshold):
    mtwv, theta = M.max_term_weighted_value(SCORES, TARGETS, beta=beta)
    assert mtwv == pytest.approx(expected)
    assert theta == threshold


def test_mtwv_ties_are_accepted_together():
    # Target and non-target tied at 1.0: accepting only the target (0.5 + ...) is impossible.
    scores = [[1.0, 1.0, 0.0]]
    targets = [[True, False, False]]
    # Accepting both: 1 - (0 + 1 * 1/2) = 0.5 with beta 1; rejecting all: 0.
    assert M.max_term_weighted_value(scores, targets, beta=1.0) == (0.5, 1.0)
    assert M.max_term_weighted_value(scores, targets, beta=3.0) == (0.0, math.inf)


def test_mtwv_skips_queries_without_targets():
    scores = np.vstack([SCORES, [[9.0, 9.0, 9.0]]])
    targets = np.vstack([TARGETS, [[False, False, False]]])
    assert M.max_term_weighted_value(scores, targets, beta=1.0) == (0.75, 2.5)
    with pytest.raises(ValueError, match="no query has a target"):
        M.max_term_weighted_value([[1.0]], [[False]])


def test_map_hand_computed():
    scores = [[3.0, 1.0, 2.0], [2.0, 2.5, 1.5]]
    # q0: target first -> AP 1. q1: targets at ranks 1 and 3 -> (1/1 + 2/3) / 2 = 5/6.
    assert M.mean_average_precision(scores, TARGETS) == pytest.approx((1 + 5 / 6) / 2)


def test_read_qbe_ground_truth(tmp_path):
    path = tmp_path / "ground_truth.csv"
    rows = [("q0", "d0", 1), ("q0", "d1", 0), ("q1", "d0", 0), ("q1", "d1", 1)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_id", "doc_id", "label"])
        writer.writerows(rows)
    queries, docs, targets = M.read_qbe_ground_truth(path)
    assert (queries, docs) == (["q0", "q1"], ["d0", "d1"])
    assert targets.tolist() == [[True, False], [False, True]]


REF = [
    "WHEN IS B-movie_name NIGHT TRAIN E-movie_name PLAYING AT B-location_name THE PLAZA "
    "THEATRE E-location_name",
    "IS IT COLD IN B-city TORONTO E-city",
    "PLAY SOMETHING",
]
HYP = [
    "WHEN IS B-movie_name NIGHT TRAN E-movie_name PLAYING AT THE PLAZA THEATRE",
    "IS IT COLD IN B-city TORONTO E-city",
    "PLAY B-genre JAZZ E-genre",
]


def test_slot_type_f1_hand_computed():
    # Utterance F1s: P=1, R=1/2 -> 2/3; 1; spurious slot on an empty reference -> 0.
    # (micro F1 over slot types would be 2/3: it must not be that)
    assert M.slot_type_f1(HYP, REF) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_slot_value_cer_hand_computed():
    # NIGHT TRAIN vs NIGHT TRAN: 1 of 11; THE PLAZA THEATRE missing: 17 of 17; TORONTO: 0 of 7.
    assert M.slot_value_cer(HYP, REF) == pytest.approx(18 / 35)


def test_slot_value_cer_takes_the_closest_value_of_the_type():
    ref = ["B-city PARIS E-city"]
    hyp = ["B-city LONDON E-city B-city PARIS E-city"]
    assert M.slot_value_cer(hyp, ref) == 0.0
    assert M.slot_value_cer(["B-town PARIS E-town"], ref) == 1.0


def test_parse_slots_matches_the_manifest_columns():
    tagged = (
        "BOOK A TABLE FOR B-party_size_number TWO E-party_size_number AT B-restaurant_name "
        "LUIGIS E-restaurant_name B-timerange AT EIGHT PM E-timerange"
    )
    column = "party_size_number=TWO;restaurant_name=LUIGIS;timerange=AT EIGHT PM"
    assert M.parse_slots(tagged) == M.parse_slot_column(column)
    assert M.strip_slot_tags(tagged) == "BOOK A TABLE FOR TWO AT LUIGIS AT EIGHT PM"
    # A tag must end at a word boundary; a nested tag is dropped from the value.
    assert M.parse_slots("B-city PARIS E-citys") == []
    assert M.parse_slots("B-city NEW B-x YORK E-city") == [("city", "NEW YORK")]
    with pytest.raises(ValueError, match="no '='"):
        M.parse_slot_column("city")


def test_read_rttm(tmp_path):
    path = tmp_path / "x.rttm"
    path.write_text(
        "SPEAKER m1 1 0.260 1.670 <NA> <NA> 1055 <NA> <NA>\n"
        "SPEAKER m1 1 1.370 1.880 <NA> <NA> 1054 <NA> <NA>\n"
    )
    turns = M.read_rttm(path)
    assert list(turns) == ["m1"]
    assert turns["m1"][0] == pytest.approx((0.26, 1.93, "1055"))
    assert turns["m1"][1][1] == pytest.approx(3.25)


def test_activity_to_annotation_frame_edges():
    activity = np.zeros((10, 2))
    activity[2:5, 0] = 1
    activity[8:, 0] = 1
    activity[0:10, 1] = 1
    annotation = M.activity_to_annotation(activity, frame_rate=4.0, speakers=["x", "y"])
    turns = sorted(
        (round(s.start, 6), round(s.end, 6), label)
        for s, _, label in annotation.itertracks(yield_label=True)
    )
    assert turns == [(0.0, 2.5, "y"), (0.5, 1.25, "x"), (2.0, 2.5, "x")]


def test_der_hand_computed():
    ref = {"m": M.turns_to_annotation([(0.0, 2.0, "A"), (1.0, 3.0, "B")])}
    # 10 frames/s: speaker 0 over [0, 2), speaker 1 over [1.5, 3): only [1, 1.5) of B missed.
    activity = np.zeros((30, 2))
    activity[:20, 0] = 1
    activity[15:, 1] = 1
    hyp = {"m": M.activity_to_annotation(activity, frame_rate=10.0)}
    result = M.diarization_error_rate(ref, hyp)
    assert result["der"] == pytest.approx(0.5 / 4)
    assert result["missed"] == pytest.approx(0.5)
    assert result["confusion"] == pytest.approx(0.0)
    # One speaker over [0, 3): [1, 2) misses one of two, [2, 3) is B labelled as A.
    single = {"m": M.activity_to_annotation(np.ones((30, 1)), frame_rate=10.0)}
    result = M.diarization_error_rate(ref, single)
    assert result["der"] == pytest.approx(2 / 4)
    assert result["missed"] == pytest.approx(1.0)
    assert result["confusion"] == pytest.approx(1.0)
    # Speech outside the reference counts as false alarm over the given duration.
    late = np.zeros((40, 2))
    late[:20, 0] = 1
    late[10:30, 1] = 1
    late[35:, 1] = 1
    result = M.diarization_error_rate(ref, {"m": M.activity_to_annotation(late, frame_rate=10.0)})
    assert result["false_alarm"] == pytest.approx(0.5)
    assert result["der"] == pytest.approx(0.5 / 4)


def test_der_collar_and_overlap_options_are_passed_on():
    ref = {"m": M.turns_to_annotation([(0.0, 2.0, "A"), (1.0, 3.0, "B")])}
    hyp = {"m": M.turns_to_annotation([(0.0, 2.0, "s"), (2.0, 3.0, "t")])}
    assert M.diarization_error_rate(ref, hyp)["der"] == pytest.approx(0.25)
    # Without the overlap [1, 2) there is nothing left to miss.
    assert M.diarization_error_rate(ref, hyp, skip_overlap=True)["der"] == pytest.approx(0.0)
    with pytest.raises(KeyError, match="no hypothesis"):
        M.diarization_error_rate(ref, {})
