"""Recursive rounds on a synthetic project: what a round may and may not touch, resume, CLI train / eval.

How much the rounds improve the labels is an outcome of training that differs between CPUs; it is measured in
``bench/bench_rounds.py``. Here: the figures a round reports are the labels' real scores, accepted images stay
exactly as they were, every other image is relabelled once per round.
"""

import json
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from application import cli
from tests.test_training import make_project
from training.evaluate import (
    evaluate_labels,
    format_scores,
    load_ground_truth,
    tag_restricted_mask,
    tag_restricted_probs,
)
from training.rounds import RoundsConfig, load_model, relabel_plan, run_rounds
from training.trainer import TrainConfig

SIZE = 64


def _config(out_dir, rounds=2, steps=60, segmenter="grabcut", **overrides) -> RoundsConfig:
    train = TrainConfig(steps=steps, batch_size=4, lr=0.01, ema_decay=0.9, amp=False, checkpoint_every=1000,
                        dhr_warmup=steps // 3)
    settings = dict(rounds=rounds, train=train, backbone="resnet_tiny", pretrained=False, crop_size=SIZE,
                    scale_range=(0.75, 1.25), scales=(1.0,), use_segmenter=segmenter != "none", min_change=0.0,
                    out_dir=str(out_dir))
    settings.update(overrides)
    return RoundsConfig(**settings)


def _png_name(record) -> str:
    return PurePosixPath(record.file_name).stem + ".png"


def _labels(store, image_id):
    return [(r.class_id, r.rle["counts"], r.score, r.source) for r in store.instances(image_id)]


def test_two_rounds_relabel_the_others_and_leave_accepted_images_alone(tmp_path):
    store, gt = make_project(tmp_path, n=12)
    accepted = [r.id for r in store.list_images()][:3]
    for image_id in accepted:
        store.set_status(image_id, "accepted", user="reviewer")
    before = {i: (store.image(i).version, _labels(store, i)) for i in accepted}
    others = [r.id for r in store.list_images() if r.id not in accepted]
    versions = {i: store.image(i).version for i in others}
    start = evaluate_labels(store, gt)["miou"]

    config = _config(tmp_path / "run", steps=12, accepted_repeat=2)
    config.train.accepted_weight = 2.0
    history = run_rounds(store.root, config, gt=gt, progress=False)

    assert [h["round"] for h in history] == [0, 1, 2]
    assert history[0]["miou"] == pytest.approx(start)
    final = evaluate_labels(store, gt)["miou"]
    assert final == pytest.approx(history[-1]["miou"])
    assert history[1]["miou"] != pytest.approx(start)  # the labels were really replaced
    for image_id in accepted:
        assert store.image(image_id).status == "accepted"
        assert (store.image(image_id).version, _labels(store, image_id)) == before[image_id]
    for image_id in others:
        record = store.image(image_id)
        assert record.version == versions[image_id] + 2  # relabelled once per round
        assert record.status in ("pseudo", "review") and 0.0 <= record.confidence <= 1.0
        assert {r.source for r in store.instances(image_id)} <= {"sam", "grabcut", "dhr"}
    assert history[1]["relabelled"] == len(others) and history[1]["conflicts"] == 0
    summary = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    model, classes = load_model(tmp_path / "run" / "round_02" / "model.pt")
    assert classes == store.classes and model.num_classes == 3


def _exact(store, image_id):
    """Everything a round could change about an image: version, status, confidence, instances to the byte."""
    record = store.image(image_id)
    return (record.version, record.status, record.confidence, record.updated_by,
            [(r.class_id, r.rle["counts"], r.score, r.source, r.needs_review, r.area) for r in store.instances(image_id)])


def test_a_round_keeps_images_edited_by_hand_unless_asked(tmp_path):
    from annotate.store import NewInstance

    store, _ = make_project(tmp_path, n=4)
    edited, *others = [r.id for r in store.list_images(order="name")]
    hand = np.zeros((SIZE, SIZE), bool)
    hand[5:20, 30:50] = True  # an instance drawn by hand on an image in review
    store.save_labels(edited, [*[i.to_new() for i in store.instances(edited)], NewInstance(store.image(edited).tag_ids[0], hand)], user="ann",
                      status="review")
    store.set_status(others[0], "review", user="ann")  # a status change alone is no edit of the labels
    before = _exact(store, edited)
    versions = {i: store.image(i).version for i in others}
    config = _config(tmp_path / "run", rounds=1, steps=3, segmenter="none")

    plan = relabel_plan(store, config)
    assert plan.relabel == tuple(others) and plan.skipped_edited == (store.image(edited).file_name,)
    assert "relabels 3 image(s), skips 1 edited by hand" in plan.summary()
    history = run_rounds(store.root, config, progress=False)
    assert _exact(store, edited) == before  # instances, mask bytes, version: exactly as the person left them
    assert history[-1]["kept_edited"] == [store.image(edited).file_name] and history[-1]["relabelled"] == 3
    for image_id in others:
        assert store.image(image_id).version == versions[image_id] + 1
        assert store.image(image_id).updated_by == "dhr-train"

    config = _config(tmp_path / "run", rounds=2, steps=3, segmenter="none", relabel_edited=True)
    assert relabel_plan(store, config).skipped_edited == ()
    history = run_rounds(store.root, config, progress=False)  # round 2, asked to relabel edited images too
    assert history[-1]["relabelled"] == 4 and history[-1]["kept_edited"] == []
    after = store.image(edited)
    assert after.version == before[0] + 1 and after.updated_by == "dhr-train"
    assert not any(np.array_equal(store.instance_mask(r), hand) for r in store.instances(edited))


def test_rounds_resume_and_stop_early(tmp_path):
    store, _ = make_project(tmp_path, n=4)
    config = _config(tmp_path / "run", rounds=3, steps=4, segmenter="none", min_change=1.0)
    history = run_rounds(store.root, config, progress=False)
    assert len(history) == 1 and history[0]["stopped_early"]  # under 100 % of pixels changed: stop
    versions = {r.id: r.version for r in store.list_images()}
    again = run_rounds(store.root, config, progress=False)  # a finished round is read back, not redone
    assert again[0] == history[0]
    assert {r.id: r.version for r in store.list_images()} == versions


def test_tag_restricted_mask_uses_only_tagged_classes():
    probs = torch.tensor([0.1, 0.6, 0.2, 0.1])[:, None, None].expand(4, 2, 2)
    mask, confidence = tag_restricted_mask(probs, [2, 3])
    assert (mask == 2).all() and confidence == pytest.approx(0.2 / 0.4)


def test_ground_truth_from_png_folder_and_coco(tmp_path):
    store, gt = make_project(tmp_path, n=4)
    folder = tmp_path / "gt"
    folder.mkdir()
    records = store.list_images()
    for record in records:
        Image.fromarray(gt[record.id].astype(np.uint8)).save(folder / _png_name(record))
    loaded = load_ground_truth(folder, store)
    assert set(loaded) == set(gt) and all(np.array_equal(loaded[i], gt[i]) for i in gt)
    # COCO: one polygon-free RLE annotation per class region, plus a crowd region that becomes ignore
    from annotate.rle import encode_mask

    images, annotations = [], []
    for n, record in enumerate(records, start=1):
        images.append({"id": n, "file_name": record.file_name, "height": record.height, "width": record.width})
        for c in range(1, 4):
            region = gt[record.id] == c
            if region.any():
                annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": 10 + c,
                                    "segmentation": encode_mask(region), "area": int(region.sum()), "iscrowd": 0})
    crowd = np.zeros((SIZE, SIZE), bool)
    crowd[:4, :4] = True
    annotations.append({"id": 999, "image_id": 1, "category_id": 11, "segmentation": encode_mask(crowd),
                        "area": 16, "iscrowd": 1})
    categories = [{"id": 10 + i, "name": name} for i, name in enumerate(store.classes, start=1)]
    coco = tmp_path / "gt.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    loaded = load_ground_truth(coco, store)
    first = records[0].id
    assert (loaded[first][:4, :4] == 255).all()
    expected = gt[first].copy()
    expected[:4, :4] = 255
    assert np.array_equal(loaded[first], expected)
    with pytest.raises(FileNotFoundError):
        load_ground_truth(tmp_path / "missing", store)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(bad / _png_name(records[0]))
    with pytest.raises(ValueError, match="5x5"):
        load_ground_truth(bad, store)


def test_cli_train_and_eval(tmp_path, capsys):
    store, gt = make_project(tmp_path, n=4)
    folder = tmp_path / "gt"
    folder.mkdir()
    for record in store.list_images():
        Image.fromarray(gt[record.id].astype(np.uint8)).save(folder / _png_name(record))
    root = str(store.root)
    code = cli.main(["train", root, "--rounds", "1", "--steps", "3", "--batch-size", "2", "--crop-size", "64",
                     "--backbone", "resnet_tiny", "--no-pretrained", "--segmenter", "none", "--scales", "1",
                     "--workers", "0", "--gt", str(folder), "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| round |" in table and "\n| 1 |" in table
    assert "the next round relabels 4 image(s); 0 accepted or rejected" in table
    assert "no image was kept as edited by hand" in table
    model_path = store.root / "training" / "round_01" / "model.pt"
    assert model_path.is_file()
    scores = evaluate_labels(store, gt)
    assert cli.main(["eval", root, "--gt", str(folder), "--json", str(tmp_path / "scores.json")]) == 0
    out = capsys.readouterr().out
    assert out.strip() == format_scores(scores, store.classes)
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["miou"] == pytest.approx(scores["miou"]) and saved["images"] == 4
    assert cli.main(["eval", root, "--gt", str(folder), "--checkpoint", str(model_path)]) == 0
    assert "| mIoU |" in capsys.readouterr().out
    # a missing ground truth is a clear error, not a traceback
    assert cli.main(["eval", root, "--gt", str(tmp_path / "nowhere")]) == 2


def test_cli_train_no_download_never_fetches_weights(tmp_path, monkeypatch, caplog):
    """`dhr train --no-download`, as `dhr bootstrap`'s: a missing checkpoint is reported, never downloaded."""
    import models.weights

    store, _ = make_project(tmp_path, n=2)
    fetched = []
    monkeypatch.setattr(models.weights, "download_checkpoint", lambda ckpt, *a, **k: fetched.append(ckpt) or 1 / 0)
    common = ["train", str(store.root), "--rounds", "1", "--steps", "1", "--batch-size", "2", "--crop-size", "64",
              "--backbone", "resnet_tiny", "--no-pretrained", "--segmenter", "sam_vit_b", "--scales", "1",
              "--workers", "0", "--quiet", "--weights-dir", str(tmp_path / "no-weights")]
    assert cli.main([*common, "--no-download"]) == 2
    assert fetched == [] and "downloading is off" in caplog.text
    with pytest.raises(ZeroDivisionError):  # without the flag the missing checkpoint is fetched
        cli.main(common)
    assert len(fetched) == 1


def test_relabel_prompts_only_components_with_cam_evidence(monkeypatch):
    """As in the bootstrap, a predicted region the network's CAM never points at gets no prompt: two red squares
    are predicted as class 1, its CAM lights only the first, so only the first is relabelled as class 1."""
    import training.rounds as rounds
    from dhr.uss import ColorTextureFeatures, image_to_tensor
    from models.segmenters.grabcut import GrabCutSegmenter
    from training.data import ImageEntry
    from training.evaluate import Prediction

    image = np.full((64, 64, 3), 90, np.uint8)
    image[8:24, 8:24] = image[40:56, 40:56] = (220, 30, 30)
    squares = torch.zeros(64, 64, dtype=torch.bool)
    squares[8:24, 8:24] = squares[40:56, 40:56] = True
    probs = torch.stack([(~squares).float(), squares.float()]) * 0.9 + 0.05
    cams = torch.zeros(1, 4, 4)
    cams[0, 0:2, 0:2] = 1.0  # the first square's cells only
    features = {"C4": torch.rand(8, 4, 4, generator=torch.Generator().manual_seed(0)), "C5": torch.rand(
        8, 4, 4, generator=torch.Generator().manual_seed(1))}
    monkeypatch.setattr(rounds, "predict_image", lambda *a, **k: Prediction(probs, cams, features))
    previous = np.zeros((64, 64), np.uint8)  # labels before the round: background only

    class Store:
        def load_image(self, image_id):
            return image

        def semantic_mask(self, image_id):
            return previous

    uss = ColorTextureFeatures()(image_to_tensor(image))
    config = RoundsConfig(rounds=1, scales=(1.0,), dhr=rounds.DHRConfig(crf=False))
    semantic, _, _ = rounds.relabel_image(Store(), None, ImageEntry(1, "0" * 64, (1,), False, True), uss, config,
                                          GrabCutSegmenter())
    first, second = semantic[8:24, 8:24] == 1, semantic[40:56, 40:56] == 1
    assert first.mean() > 0.8 and second.mean() < 0.05


def _two_square_relabel(monkeypatch, relabel: str, blue: tuple[int, int, int], previous: np.ndarray | None = None,
                        keep_tags: bool = True, max_area_ratio: float = 2.0) -> np.ndarray:
    """Relabel a 64 x 64 image tagged (1, 2) whose network predicts only the red square (class 1) while its CAM
    of class 2 lights the second square, coloured ``blue``; ``previous``: the labels before the round
    (default background only). Returns the semantic mask."""
    import training.rounds as rounds
    from dhr.uss import ColorTextureFeatures, image_to_tensor
    from models.segmenters.grabcut import GrabCutSegmenter
    from training.data import ImageEntry
    from training.evaluate import Prediction

    image = np.full((64, 64, 3), 90, np.uint8)
    image[8:24, 8:24] = (220, 30, 30)
    image[40:56, 40:56] = blue
    red = torch.zeros(64, 64, dtype=torch.bool)
    red[8:24, 8:24] = True
    probs = torch.stack([(~red).float(), red.float(), torch.zeros(64, 64)]) * 0.9 + 0.05
    probs /= probs.sum(0, keepdim=True)
    cams = torch.zeros(2, 4, 4)
    cams[0, 0:2, 0:2] = 1.0  # the red square's cells
    cams[1, 2:4, 2:4] = 1.0  # the second square's cells: the network's CAM sees it, its prediction does not
    generator = torch.Generator().manual_seed(0)
    features = {"C4": torch.rand(8, 4, 4, generator=generator), "C5": torch.rand(8, 4, 4, generator=generator)}
    monkeypatch.setattr(rounds, "predict_image", lambda *a, **k: Prediction(probs, cams, features))
    previous = np.zeros((64, 64), np.uint8) if previous is None else previous

    class Store:
        def load_image(self, image_id):
            return image

        def semantic_mask(self, image_id):
            return previous

    uss = ColorTextureFeatures()(image_to_tensor(image))
    config = RoundsConfig(rounds=1, scales=(1.0,), dhr=rounds.DHRConfig(crf=False), relabel=relabel,
                          keep_tags=keep_tags, max_area_ratio=max_area_ratio)
    entry = ImageEntry(1, "0" * 64, (1, 2), False, True)
    return rounds.relabel_image(Store(), None, entry, uss, config, GrabCutSegmenter())[0]


@pytest.mark.parametrize("relabel", ["prediction", "restore", "dhr"])
def test_relabel_seeds_restore_a_missing_class_only_where_it_looks_distinct(monkeypatch, relabel):
    """The prediction seeds the relabelling. A tagged class it lacks comes back where the network's CAM points
    with ``restore`` (default) and ``dhr`` when it looks unlike the predicted class (a blue square beside a red
    one), but with ``restore`` not when it looks the same (a second red square: USS-correlated with class 1, so
    the network's choice stands); ``prediction`` never brings it back."""
    distinct = _two_square_relabel(monkeypatch, relabel, (30, 30, 220))
    alike = _two_square_relabel(monkeypatch, relabel, (220, 30, 30))
    for semantic in (distinct, alike):
        assert (semantic[8:24, 8:24] == 1).mean() > 0.8  # the predicted class is kept either way
    restored = (distinct[40:56, 40:56] == 2).mean()
    if relabel == "prediction":
        assert not (distinct == 2).any() and not (alike == 2).any()
    else:
        assert restored > 0.5
    if relabel == "restore":
        assert not (alike == 2).any()


@pytest.mark.parametrize("relabel", ["prediction", "restore", "dhr"])
def test_a_round_keeps_a_tagged_class_the_labels_hold(monkeypatch, relabel):
    """A tagged class the network predicts nowhere but the current labels hold (the second square, as red as the
    first, so ``restore`` does not bring it back) keeps its region: the tags say it is there. With
    ``keep_tags=False`` and no area bound (which also keeps a class from losing more than half its area) the
    ``prediction`` and ``restore`` seeds drop it."""
    previous = np.zeros((64, 64), np.uint8)
    previous[8:24, 8:24] = 1
    previous[42:54, 42:54] = 2  # a little inside the square: its labels before the round
    kept = _two_square_relabel(monkeypatch, relabel, (220, 30, 30), previous)
    assert (kept[8:24, 8:24] == 1).mean() > 0.8
    assert (kept[42:54, 42:54] == 2).mean() > 0.8
    assert (kept[:, :32] == 2).sum() == 0  # nothing of class 2 on the first square's side
    bounded = _two_square_relabel(monkeypatch, relabel, (220, 30, 30), previous, keep_tags=False)
    assert (bounded[42:54, 42:54] == 2).mean() > 0.8
    dropped = _two_square_relabel(monkeypatch, relabel, (220, 30, 30), previous, keep_tags=False, max_area_ratio=0)
    if relabel != "dhr":
        assert not (dropped == 2).any()


def test_unsure_pixels_keep_their_current_labels():
    """Known answer: where the network's probability (over background and the tags) is below the bound, the
    seeds take the labels before the round; where it is at least the bound, the prediction; 0 turns it off."""
    from annotate.labeling import Seeds
    from training.relabel_seeds import unsure_to_previous

    probs = torch.zeros(4, 2, 3)
    probs[:, 0, :] = torch.tensor([0.05, 0.9, 0.0, 0.05])[:, None]  # sure of class 1 (class 2 is not tagged)
    probs[:, 1, :] = torch.tensor([0.3, 0.35, 0.3, 0.05])[:, None]  # unsure: 0.35 / 0.7 = 0.5 over the tags
    base = torch.tensor([[1, 1, 1], [1, 1, 1]])
    previous = torch.tensor([[0, 3, 0], [0, 3, 0]])
    seeds = Seeds(base, probs[[0, 1, 3]], [0, 1, 3])
    confidence = tag_restricted_probs(probs, [1, 3]).max(0).values
    mixed = unsure_to_previous(seeds, confidence, previous, 0.8)
    assert mixed.mask.tolist() == [[1, 1, 1], [0, 3, 0]]
    assert unsure_to_previous(seeds, confidence, previous, 0.5).mask.tolist() == base.tolist()
    assert unsure_to_previous(seeds, confidence, previous, 0.0) is seeds


def test_a_round_moves_each_held_class_by_a_bounded_step():
    """Known answer of ``bounded_change`` (factor 2): a class that would grow past twice its area gives its gains
    back, one that would keep less than half of it takes its losses back, a moderate change and a class the
    labels did not hold (restored) pass; 0 turns the bound off; a bad factor is refused."""
    from annotate.labeling import Seeds
    from training.relabel_seeds import bounded_change

    previous = torch.zeros(20, 20, dtype=torch.long)
    previous[0:10, 0:10] = 1  # 100 px
    previous[12:16, 12:16] = 2  # 16 px
    previous[0:5, 14:20] = 3  # 30 px
    new = previous.clone()
    new[10:20, 0:10] = 1  # class 1 would grow to 200 + ... px: 2x is the bound, one more row is over it
    new[10, 10] = 1
    new[12:16, 12:16] = 0
    new[12:14, 12:14] = 2  # class 2 would keep 4 px of 16
    new[5:7, 14:20] = 3  # class 3 grows to 42 px: within the bound
    new[18:20, 18:20] = 4  # class 4 appears (restored): not bounded
    seeds = Seeds(new, torch.zeros(5, 20, 20), [0, 1, 2, 3, 4])
    out = bounded_change(seeds, previous, [1, 2, 3, 4], 2.0).mask
    expected = previous.clone()
    expected[5:7, 14:20] = 3
    expected[18:20, 18:20] = 4
    assert torch.equal(out, expected)
    within = previous.clone()
    within[10:19, 0:10] = 1  # 190 px: kept
    assert torch.equal(bounded_change(Seeds(within, seeds.heatmaps, seeds.classes), previous, [1, 2, 3], 2.0).mask,
                       within)
    assert bounded_change(seeds, previous, [1, 2, 3, 4], 0.0) is seeds
    with pytest.raises(ValueError, match="max_area_ratio"):
        RoundsConfig(max_area_ratio=0.5)
