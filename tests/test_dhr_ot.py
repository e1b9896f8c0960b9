"""Transport plans: marginals, normalisation and degenerate inputs."""

import ot
import pytest
import torch

from dhr.ot import OTSettings, ot_rebalance, plan_maps, transport_plan


def _raw_plan(similarity: torch.Tensor, eps: float, max_iter: int = 1000) -> torch.Tensor:
    n, c = similarity.shape
    a = torch.full((n,), 1 / n, dtype=torch.float64)
    b = torch.full((c,), 1 / c, dtype=torch.float64)
    return ot.sinkhorn(a, b, 1 - similarity.double(), eps, method="sinkhorn_log", numItermax=max_iter, stopThr=1e-12)


def test_marginals_hold_for_the_raw_plan():
    torch.manual_seed(0)
    similarity = torch.rand(300, 4)
    plan = _raw_plan(similarity, 0.1)
    assert torch.allclose(plan.sum(dim=1), torch.full((300,), 1 / 300, dtype=torch.float64), atol=1e-3 / 300)
    assert torch.allclose(plan.sum(dim=0), torch.full((4,), 0.25, dtype=torch.float64), atol=1e-3)


def test_plan_columns_are_min_max_normalised_and_follow_the_raw_plan(device):
    torch.manual_seed(1)
    similarity = torch.rand(200, 3, device=device)
    plan, log = transport_plan(similarity, OTSettings(eps=0.1, max_iter=1000, stop_thr=1e-9), log=True)
    assert log.converged and log.error < 1e-9
    assert plan.device == similarity.device and plan.dtype == similarity.dtype
    assert torch.allclose(plan.amin(dim=0), torch.zeros(3, device=device), atol=1e-6)
    assert torch.allclose(plan.amax(dim=0), torch.ones(3, device=device), atol=1e-6)
    raw = _raw_plan(similarity.cpu(), 0.1)
    expected = (raw - raw.amin(0)) / (raw.amax(0) - raw.amin(0))
    assert torch.allclose(plan.cpu().double(), expected, atol=1e-4)


def test_a_minor_class_receives_a_full_share_of_mass():
    # 90 pixels belong to class 0, 10 to class 1: class 1 still receives half of the mass, from its own pixels.
    similarity = torch.zeros(100, 2)
    similarity[:90, 0] = 1.0
    similarity[90:, 1] = 1.0
    similarity[90:, 0] = 0.8  # the major class also fires on the minor pixels
    raw = _raw_plan(similarity, 0.1)
    assert raw[90:, 1].sum() > raw[90:, 0].sum() * 5  # minor pixels are transported to the minor class
    for settings in (OTSettings(), OTSettings(max_iter=1000, stop_thr=1e-9), OTSettings(solver="reference", stop_thr=1e-2)):
        plan = transport_plan(similarity, settings)
        assert plan[90:, 1].mean() > 0.9 and plan[90:, 0].mean() < 0.2, settings


@pytest.mark.parametrize(
    "similarity",
    [torch.zeros(50, 3), torch.ones(50, 3), torch.rand(50, 1), torch.rand(50, 1).repeat(1, 4)],
    ids=["all-zero", "all-one", "one-class", "identical-columns"],
)
@pytest.mark.parametrize("solver", ["pot", "reference"])
def test_degenerate_inputs_give_finite_plans(similarity, solver):
    plan = transport_plan(similarity, OTSettings(solver=solver))
    assert torch.isfinite(plan).all() and plan.shape == similarity.shape
    assert plan.min() >= 0 and plan.max() <= 1


def test_tiny_eps_stays_finite():
    torch.manual_seed(2)
    plan = transport_plan(torch.rand(64, 3), OTSettings(eps=1e-4, max_iter=20))
    assert torch.isfinite(plan).all()


def test_an_early_stop_is_logged_not_warned(recwarn):
    torch.manual_seed(3)
    _, log = transport_plan(torch.rand(64, 3), OTSettings(eps=0.01, max_iter=1, stop_thr=1e-12), log=True)
    assert log.iterations == 1 and not log.converged and log.error > 1e-12
    assert len(recwarn) == 0


def test_reference_solver_stops_on_the_row_scaling_change():
    # The authors' rule: the mean change of r (about 1 / N once updated) falls below 1e-2 within a few iterations.
    torch.manual_seed(4)
    similarity = torch.rand(4096, 5)
    _, log = transport_plan(similarity, OTSettings(solver="reference", max_iter=100, stop_thr=1e-2), log=True)
    assert log.converged and 2 <= log.iterations <= 10
    # Run long enough, the same solver meets the transport marginals like POT does.
    plan_ref = transport_plan(similarity, OTSettings(solver="reference", max_iter=3000, stop_thr=1e-12))
    plan_pot = transport_plan(similarity, OTSettings(solver="pot", max_iter=3000, stop_thr=1e-12))
    assert torch.allclose(plan_ref, plan_pot, atol=1e-3)


def test_early_plans_share_each_pixel_among_classes():
    # After one iteration and the column min-max, a plan depends only on each pixel's softmax over classes.
    torch.manual_seed(5)
    similarity = torch.rand(500, 3)
    plan = transport_plan(similarity, OTSettings(solver="reference", eps=0.1, max_iter=1, stop_thr=0.0)).double()
    soft = torch.softmax(similarity.double() / 0.1, dim=1)
    expected = (soft - soft.amin(0)) / (soft.amax(0) - soft.amin(0))
    assert torch.allclose(plan, expected, atol=1e-5)


def test_no_transport_is_a_plan_of_ones():
    similarity = torch.rand(50, 3)
    assert torch.equal(transport_plan(similarity, OTSettings(solver="none")), torch.ones(50, 3))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        transport_plan(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="eps"):
        transport_plan(torch.rand(4, 2), OTSettings(eps=0.0))
    with pytest.raises(ValueError, match="solver"):
        OTSettings(solver="exact")
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        plan_maps(torch.rand(4, 2))


def test_ot_rebalance_keeps_shape_and_a_single_map():
    maps = torch.rand(1, 5, 6)
    assert torch.equal(ot_rebalance(maps), maps)
    two = torch.rand(2, 5, 6)
    out = ot_rebalance(two)
    assert out.shape == two.shape and (out <= two + 1e-6).all()
