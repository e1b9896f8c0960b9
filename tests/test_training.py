"""Training loop: data from the store, loss, schedule, EMA, DHR in the step, exact resume after a kill."""

from pathlib import Path

import numpy as np
import pytest
import torch

from models.deeplab import build_deeplab
from models.optim import poly_lambda
from models.transforms import AugmentConfig
from training.data import (
    EpochSampler,
    ProjectDataset,
    USSFeatureCache,
    collate,
    precompute_uss_features,
    project_entries,
)
from training.trainer import ModelEMA, TrainConfig, Trainer, build_optimizer, segmentation_loss

SIZE = 64


def noisy_seed(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A CAM-like pseudo mask: the small class swallowed, objects dilated or eroded, blocky 8-px boundaries."""
    import cv2

    seed = gt.copy()
    seed[seed == 3] = 2 if rng.random() < 0.5 else 0
    out = np.zeros_like(seed)
    for c in (2, 1):
        m = (seed == c).astype(np.uint8)
        if rng.random() < 0.6:
            m = cv2.dilate(m, np.ones((7, 7), np.uint8))
        else:
            m = cv2.erode(m, np.ones((5, 5), np.uint8))
        out[(m > 0) & (out == 0)] = c
    small = cv2.resize(out, (out.shape[1] // 8, out.shape[0] // 8), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, out.shape[::-1], interpolation=cv2.INTER_NEAREST)


def make_project(root: Path, n: int = 12, size: int = SIZE, seed: int = 0):
    """A project of synthetic scenes labelled with noisy seeds -> (store, ground truth by image id)."""
    from PIL import Image

    from annotate.store import NewInstance, ProjectStore
    from tests.synthetic_dataset import CLASSES, make_samples

    rng = np.random.default_rng(seed)
    store = ProjectStore.create(root / "project", list(CLASSES))
    source = root / "source"
    source.mkdir(parents=True, exist_ok=True)
    gt = {}
    for sample in make_samples(n, (size, size), seed=seed):
        Image.fromarray(sample.image).save(source / sample.name)
        image_id = store.add_image(source / sample.name, list(sample.tags))
        labels = noisy_seed(sample.gt, rng)
        instances = [NewInstance(c, labels == c, source="dhr") for c in range(1, 4) if (labels == c).any()]
        store.save_labels(image_id, instances, user="bootstrap", status="pseudo")  # as pseudo-labels are saved
        gt[image_id] = sample.gt.astype(np.int64)
    return store, gt


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    store, gt = make_project(root)
    from models import ModelSettings
    from models.uss import build_uss_provider

    cache = USSFeatureCache(store.root / "cache" / "uss", "color")
    entries = project_entries(store)
    assert precompute_uss_features(store, entries, build_uss_provider("color", ModelSettings()), cache, progress=False) == len(entries)
    return store, gt, cache


def _dataset(store, cache):
    return ProjectDataset(store.root, project_entries(store), len(store.classes),
                          AugmentConfig(crop_size=SIZE, scale_range=(0.75, 1.25)), cache)


def _trainer(store, cache, out_dir, steps=8, **overrides):
    torch.manual_seed(0)
    model = build_deeplab(len(store.classes), "resnet_tiny")
    settings = dict(steps=steps, batch_size=4, lr=0.01, checkpoint_every=3, amp=False, dhr_warmup=2, seed=3)
    settings.update(overrides)
    return Trainer(model, _dataset(store, cache), TrainConfig(**settings), out_dir, progress=False)


def test_dataset_items_and_cache(project, tmp_path):
    store, gt, cache = project
    data = _dataset(store, cache)
    item = data[(0, 11)]
    again = data[(0, 11)]
    assert item["image"].shape == (3, SIZE, SIZE) and item["mask"].shape == (SIZE, SIZE)
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["mask"], again["mask"])
    entry = data.entries[0]
    assert item["tags"].nonzero().flatten().add(1).tolist() == list(entry.tags)
    assert item["uss"].shape[0] == 13 and item["uss"].dtype == torch.float32
    # the mask values come from the store's labels (class ids of the tags, background, ignore where padded)
    allowed = {0, 255, *entry.tags}
    assert set(item["mask"].unique().tolist()) <= allowed
    batch = collate([data[(i, 0)] for i in range(3)])
    assert batch["image"].shape == (3, 3, SIZE, SIZE) and len(batch["uss"]) == 3
    assert batch["accepted"].dtype == torch.bool and batch["box"].shape == (3, 4)
    # the cache round-trips in float16 and rejects bad input
    features = torch.randn(4, 5, 6)
    cache.put("ab" * 32, features)
    torch.testing.assert_close(cache.get("ab" * 32), features, atol=2e-3, rtol=1e-3)
    assert cache.get("cd" * 32) is None
    with pytest.raises(ValueError, match="finite"):
        cache.put("ab" * 32, torch.full((1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="hash"):
        cache.path("../escape")


def test_unlabelled_images_are_ignore_and_rejected_images_left_out(tmp_path):
    from annotate.store import ProjectStore
    from tests.synthetic_dataset import make_samples

    store, _ = make_project(tmp_path, n=3)
    sample = make_samples(1, (SIZE, SIZE), seed=5)[0]
    from PIL import Image

    Image.fromarray(sample.image).save(tmp_path / "new.png")
    new_id = store.add_image(tmp_path / "new.png", list(sample.tags))
    first = store.list_images()[0]
    store.set_status(first.id, "rejected", user="test")
    entries = project_entries(ProjectStore.open(store.root))
    assert first.id not in [e.image_id for e in entries]
    new_entry = next(e for e in entries if e.image_id == new_id)
    assert not new_entry.labelled
    data = ProjectDataset(store.root, entries, 3, AugmentConfig(crop_size=SIZE))
    item = data[entries.index(new_entry)]
    assert (item["mask"] == 255).all() and item["uss"] is None


def test_loader_workers_give_the_same_batches(project):
    store, _, cache = project
    data = _dataset(store, cache)
    batches = []
    for workers in (0, 2):
        sampler = EpochSampler(data, seed=1)
        sampler.set_epoch(2, start=4)
        loader = torch.utils.data.DataLoader(data, batch_size=4, sampler=sampler, collate_fn=collate,
                                             num_workers=workers)
        batches.append(next(iter(loader)))
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["mask"], batches[1]["mask"])
    # start skips exactly the first items of the epoch's order
    sampler = EpochSampler(data, seed=1)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=4)
    assert list(sampler) == full[4:]


def test_segmentation_loss_weights_and_ignore():
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, 1, 0, 0] = 2.0
    masks = torch.tensor([[[1, 255]], [[0, 2]]])
    weights = torch.tensor([1.0, 3.0])
    # per pixel CE: image 0 pixel 0 -> -log softmax(0,2,0)[1]; image 1: log(3) twice (uniform logits)
    ce0 = -torch.log_softmax(torch.tensor([0.0, 2.0, 0.0]), 0)[1]
    expected = (ce0 + 3 * 2 * np.log(3)) / (1 + 3 * 2)
    torch.testing.assert_close(segmentation_loss(logits, masks, weights), expected.float())
    empty = torch.full((2, 1, 2), 255)
    assert float(segmentation_loss(logits, empty, weights)) == 0.0


def test_ema_and_poly_schedule():
    net = torch.nn.Linear(3, 2)
    ema = ModelEMA(net, decay=0.9)
    before = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * net.weight)
    warm = ModelEMA(net, decay=0.999)  # with the step the decay warms up: (1 + step) / (10 + step)
    start = warm.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    warm.update(net, step=0)
    torch.testing.assert_close(warm.module.weight, 0.1 * start + 0.9 * net.weight)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for name, steps in (("plain", [None] * 150), ("warm", list(range(150)))):  # 150 updates towards fixed weights
        ema = ModelEMA(net, decay=0.999)
        with torch.no_grad():
            ema.module.weight.zero_()
        for step in steps:
            ema.update(net, step)
        left = 1 - float(ema.module.weight.mean())  # share of the (zero) start still in the average
        assert left == (pytest.approx(0.999**150, rel=1e-4) if name == "plain" else pytest.approx(0, abs=1e-6)), name
    factor = poly_lambda(100, 0.9)
    assert factor(0) == 1.0 and factor(100) == 0.0
    assert factor(50) == pytest.approx(0.5 ** 0.9)
    model = build_deeplab(2, "resnet_tiny")
    config = TrainConfig(steps=10)
    optimizer = build_optimizer(model, config)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-2]
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 4e-5


def _fixed_batch_loss(model, batch) -> float:
    """Loss of the network (eval mode) on one fixed batch against its stored masks and tags."""
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        out = model(batch["image"])
        seg = segmentation_loss(out["seg"], batch["mask"], torch.ones(len(batch["mask"])))
        return float(seg + F.multilabel_soft_margin_loss(out["cls"], batch["tags"]))


@pytest.mark.parametrize("dhr", [False, True])
def test_training_loss_falls(project, tmp_path, dhr):
    store, _, cache = project
    trainer = _trainer(store, cache, tmp_path / "run", steps=36, checkpoint_every=100, dhr=dhr, dhr_warmup=0)
    data = _dataset(store, cache)
    batch = collate([data[(i, 99)] for i in range(len(data))])
    before = _fixed_batch_loss(trainer.model, batch)
    result = trainer.fit()
    assert result.finished and len(result.losses) == 36
    # 3 steps per epoch: the first and the last 6 steps each see every image twice
    first, last = np.mean(result.losses[:6]), np.mean(result.losses[-6:])
    assert last < 0.8 * first, (first, last)
    # against the stored masks; with the DHR step the network learns the rebalanced masks instead
    assert _fixed_batch_loss(trainer.model, batch) < (0.75 if dhr else 0.6) * before
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.0, 0.0]  # poly schedule ends at zero
    assert (result.dhr_seconds > 0) == dhr
    assert (tmp_path / "run" / "last.pt").is_file()


def test_resume_after_a_kill_gives_the_same_weights(project, tmp_path):
    store, _, cache = project
    full = _trainer(store, cache, tmp_path / "full")
    full.fit()
    killed = _trainer(store, cache, tmp_path / "killed")
    killed.fit(stop_after=5)  # 12 images / batch 4: the kill falls inside the second epoch
    assert killed.step == 5
    resumed = _trainer(store, cache, tmp_path / "killed")
    result = resumed.fit()
    assert result.step == 8 and len(result.losses) == 3
    for name, reference in full.model.state_dict().items():
        assert torch.equal(reference, resumed.model.state_dict()[name]), name
    for name, reference in full.ema.state_dict().items():
        assert torch.equal(reference, resumed.ema.state_dict()[name]), name
    momentum = [s["momentum_buffer"] for s in full.optimizer.state.values()]
    assert all(torch.equal(a, s["momentum_buffer"]) for a, s in zip(momentum, resumed.optimizer.state.values(), strict=True))
    # the weights did move, and a checkpoint for another schedule is refused
    assert not torch.equal(full.model.state_dict()["cam_head.weight"], killed.model.state_dict()["cam_head.weight"])
    with pytest.raises(ValueError, match="steps"):
        _trainer(store, cache, tmp_path / "killed", steps=9).fit()


def test_training_leaves_the_callers_random_generator_alone(project, tmp_path):
    store, _, cache = project
    trainer = _trainer(store, cache, tmp_path / "run", steps=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    trainer.fit()
    torch.testing.assert_close(torch.rand(3), expected)
