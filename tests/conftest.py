"""Shared test settings: deterministic, single-threaded torch so tests behave the same on any machine."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _no_checkpoint_downloads(monkeypatch):
    """Tests never reach the network: an http(s) checkpoint download fails as it does offline (file:// works)."""
    import models.weights

    download = models.weights.urllib_download

    def offline(url, destination, **kwargs):
        if not url.startswith("file://"):
            raise OSError(f"network disabled in tests ({url})")
        return download(url, destination, **kwargs)

    monkeypatch.setattr(models.weights, "urllib_download", offline)
