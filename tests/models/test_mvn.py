"""The multivariate-normal head against torch.distributions.MultivariateNormal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal

from cosmobench.models.mvn import MVNTriLHead, mvn_params_size, mvn_tril_log_prob


@pytest.mark.parametrize("t", [1, 2, 3, 5])
def test_log_prob_equals_torch_distribution(t):
    g = torch.Generator().manual_seed(t)
    head = MVNTriLHead(t).double()
    params = torch.randn(
        64, mvn_params_size(t), generator=g, dtype=torch.float64, requires_grad=True
    )
    y = torch.randn(64, t, generator=g, dtype=torch.float64)
    loc, tril = head(params)
    ours = mvn_tril_log_prob(y, loc, tril)
    ref = MultivariateNormal(loc, scale_tril=tril).log_prob(y)
    torch.testing.assert_close(ours, ref)
    # and the gradients the optimiser sees are the same
    (g_ours,) = torch.autograd.grad(ours.sum(), params, retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref.sum(), params)
    torch.testing.assert_close(g_ours, g_ref)


def test_head_layout_and_diagonal():
    head = MVNTriLHead(3)
    p = torch.arange(9.0).unsqueeze(0) - 4.0  # loc -4..-2, raw diag -1..1, lower 2..4
    loc, tril = head(p)
    torch.testing.assert_close(loc[0], torch.tensor([-4.0, -3.0, -2.0]))
    torch.testing.assert_close(
        torch.diagonal(tril[0]), F.softplus(torch.tensor([-1.0, 0.0, 1.0])) + 1e-5
    )
    lower = torch.tensor([[0, 0, 0], [2.0, 0, 0], [3.0, 4.0, 0]])
    torch.testing.assert_close(tril[0] - torch.diag(torch.diagonal(tril[0])), lower)


def test_diagonal_stays_positive_for_extreme_inputs():
    loc, tril = MVNTriLHead(2)(torch.tensor([[0.0, 0.0, -1e4, -1e4, 3.0]]))
    assert (torch.diagonal(tril, 0, 1, 2) >= 1e-5).all()
    assert torch.isfinite(mvn_tril_log_prob(torch.zeros(1, 2), loc, tril)).all()


def test_params_size():
    assert [mvn_params_size(t) for t in (1, 2, 3)] == [2, 5, 9]
