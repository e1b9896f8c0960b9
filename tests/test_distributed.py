"""Two CPU processes (gloo): gradients are averaged, weights stay equal, rounds relabel each image once."""

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from training.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    init_distributed,
    unwrap,
    wrap_model,
)

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import warnings

    warnings.simplefilter("ignore")
    from models.deeplab import build_deeplab
    from models.transforms import AugmentConfig
    from training.data import ProjectDataset, USSFeatureCache, project_entries
    from training.distributed import cleanup
    from training.rounds import RoundsConfig, run_rounds
    from training.trainer import TrainConfig, Trainer

    ctx = init_distributed("cpu")
    results = {"rank": ctx.rank, "world": ctx.world_size}
    # 1. DDP averages gradients: each rank feeds different data, both end with the mean gradient
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 1, bias=False)
    net = wrap_model(linear, ctx)
    inputs = [torch.arange(3.0) + 1, torch.tensor([10.0, -2.0, 4.0])]
    net(inputs[ctx.rank][None]).sum().backward()
    results["grad"] = unwrap(net).weight.grad.clone()
    results["sum"] = all_reduce_sum(torch.tensor([float(ctx.rank + 1)]), ctx)
    results["broadcast"] = broadcast_object({"from": ctx.rank}, ctx)
    # 2. a short DDP training run keeps identical weights on both ranks
    from annotate.store import ProjectStore

    store = ProjectStore.open(root)
    cache = USSFeatureCache(store.root / "cache" / "uss", "color")
    data = ProjectDataset(store.root, project_entries(store), 3, AugmentConfig(crop_size=64), cache)
    torch.manual_seed(ctx.rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = build_deeplab(3, "resnet_tiny")
    trainer = Trainer(model, data, TrainConfig(steps=3, batch_size=2, amp=False, dhr_warmup=1, lr=0.01), Path(out) / "ddp",
                      ctx=ctx, progress=False)
    trainer.fit()
    results["state"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    results["ema"] = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    # 3. one round on both ranks: every unreviewed image is relabelled exactly once
    config = RoundsConfig(rounds=1, train=TrainConfig(steps=2, batch_size=2, amp=False, dhr=False), backbone="resnet_tiny",
                          pretrained=False, crop_size=64, scales=(1.0,), use_segmenter=False, out_dir=str(Path(out) / "rounds"))
    results["history"] = run_rounds(root, config, ctx, progress=False)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    cleanup(ctx)


def test_world_of_one_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and not ctx.distributed and ctx.is_main
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_sum(values, ctx), values)
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, ctx) is model and unwrap(model) is model


def test_two_gloo_processes_average_gradients_and_keep_weights_equal(tmp_path):
    from models import ModelSettings
    from models.uss import build_uss_provider
    from tests.test_training import make_project
    from training.data import USSFeatureCache, precompute_uss_features, project_entries

    store, _ = make_project(tmp_path, n=6)
    cache = USSFeatureCache(store.root / "cache" / "uss", "color")
    precompute_uss_features(store, project_entries(store), build_uss_provider("color", ModelSettings()),
                            cache, progress=False)
    versions = {r.id: r.version for r in store.list_images()}
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(_worker, args=(_free_port(), str(store.root), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    expected = (torch.arange(3.0) + 1 + torch.tensor([10.0, -2.0, 4.0])) / 2  # mean of d(w.x)/dw over ranks
    for result in ranks:
        torch.testing.assert_close(result["grad"], expected[None])
        assert float(result["sum"]) == 3.0 and result["broadcast"] == {"from": 0}
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    for name, value in ranks[0]["ema"].items():
        assert torch.equal(value, ranks[1]["ema"][name]), name
    relabelled = ranks[0]["history"][0]["relabelled"]
    assert relabelled == len(versions) == ranks[1]["history"][0]["relabelled"]
    assert {r.id: r.version for r in store.list_images()} == {i: v + 1 for i, v in versions.items()}
