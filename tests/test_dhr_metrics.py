"""Metrics against hand-computed values."""

import math

import pytest
import torch

from dhr.metrics import confusion_matrix, minor_class_recall, segmentation_scores


def test_scores_match_hand_computed_values():
    gt = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 255, 0, 2]])
    conf = confusion_matrix(pred, gt, num_classes=3)
    # class 0: T=4, TP=2, P=3 (pixels (0,0), (1,0), (1,2)); one class-0 pixel predicted as 255 (a miss).
    assert conf.tolist() == [[2, 1, 0, 1], [1, 2, 0, 0], [0, 0, 0, 0]]
    scores = segmentation_scores(conf)
    iou0, iou1 = 2 / (4 + 3 - 2), 2 / (3 + 3 - 2)
    assert scores["iou"][0] == pytest.approx(iou0) and scores["iou"][1] == pytest.approx(iou1)
    assert math.isnan(scores["iou"][2])  # class 2 is never in the ground truth nor predicted on valid pixels
    assert scores["miou"] == pytest.approx((iou0 + iou1) / 2)
    assert scores["fpr"] == pytest.approx(((3 - 2) / 5 + (3 - 2) / 4) / 2)
    assert scores["fnr"] == pytest.approx(((4 - 2) / 5 + (3 - 2) / 4) / 2)


def test_perfect_prediction():
    gt = torch.randint(0, 4, (2, 10, 10))
    scores = segmentation_scores(confusion_matrix(gt, gt, 4))
    assert scores["miou"] == 1.0 and scores["fpr"] == 0.0 and scores["fnr"] == 0.0


def test_minor_class_recall_counts_only_small_classes():
    gt = torch.zeros(10, 10, dtype=torch.long)
    gt[:, :5] = 1  # 50 %: major
    gt[0, 9] = 2
    gt[1, 9] = 2  # 2 %: minor
    pred = gt.clone()
    pred[1, 9] = 1
    assert minor_class_recall(pred, gt, num_classes=3, max_share=0.05) == pytest.approx(0.5)
    assert math.isnan(minor_class_recall(pred, gt, num_classes=3, max_share=0.01))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 2)
