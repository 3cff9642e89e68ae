"""Shape CNN / BNN: configuration, loss (NLL + KL / N) and the predictive mixture."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from cosmobench.errors import CosmobenchError
from cosmobench.models import ElementPReLU, ShapeConfig, ShapeNet, build_model
from cosmobench.models.variational import VariationalConv2d, VariationalLinear

SMALL = (4, 8, 8, 8)  # filters for fast maths checks; architecture tests use the paper's


def _batch(t=3, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 6, 64, 64, generator=g), 0.3 * torch.randn(b, t, generator=g)


def test_paper_architecture():
    net = ShapeNet()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [
        (f, s) for f in (32, 64, 128, 256) for s in (1, 2)
    ]
    prelus = [m.weight.shape for m in net.features if isinstance(m, ElementPReLU)]
    assert prelus[0] == (32, 64, 64) and prelus[1] == (32, 32, 32) and prelus[-1] == (256, 4, 4)
    assert net.features(torch.zeros(1, 6, 64, 64)).shape == (1, 256, 4, 4)
    assert net.dense.in_features == 4096 and net.dense.out_features == 9


def test_bnn_is_the_cnn_with_variational_layers():
    cnn, bnn = ShapeNet(ShapeConfig()), ShapeNet(ShapeConfig(bayesian=True))
    kinds = [type(m).__name__ for m in cnn.features]
    bkinds = [type(m).__name__ for m in bnn.features]
    assert bkinds == [k.replace("SameConv2d", "VariationalConv2d") for k in kinds]
    assert isinstance(bnn.dense, VariationalLinear)
    assert sum(isinstance(m, VariationalConv2d) for m in bnn.modules()) == 8


def test_cnn_loss_is_mean_nll():
    net = ShapeNet(ShapeConfig(filters=SMALL))
    x, y = _batch()
    loc, tril = net(x)
    expected = -MultivariateNormal(loc, scale_tril=tril).log_prob(y).mean()
    torch.testing.assert_close(net.loss(x, y), expected)
    torch.testing.assert_close(net.loss(x, y, n_train=10), expected)  # n_train unused


def test_bnn_loss_is_negative_elbo():
    net = ShapeNet(ShapeConfig(bayesian=True, filters=SMALL, targets=("e1", "e2")))
    x, y = _batch(t=2)
    torch.manual_seed(3)
    loss = net.loss(x, y, n_train=250)
    torch.manual_seed(3)
    loc, tril = net(x)
    expected = -MultivariateNormal(loc, scale_tril=tril).log_prob(y).mean() + net.kl() / 250
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="n_train"):
        net.loss(x, y)


def test_predict_deterministic():
    net = ShapeNet(ShapeConfig(filters=SMALL)).eval()
    x, _ = _batch()
    pred = net.predict(x, samples=7)  # samples are ignored: one pass
    loc, tril = net(x)
    torch.testing.assert_close(pred.mean, loc)
    torch.testing.assert_close(pred.cov, tril @ tril.mT)
    assert (pred.epistemic == 0).all()
    torch.testing.assert_close(pred.std, torch.diagonal(tril @ tril.mT, 0, 1, 2).sqrt())


def test_predict_bnn_is_the_sample_mixture():
    net = ShapeNet(ShapeConfig(bayesian=True, filters=SMALL, rho_init=(-4.0, 0.1))).eval()
    x, _ = _batch(b=4)
    torch.manual_seed(11)
    pred = net.predict(x, samples=6)
    torch.manual_seed(11)
    with torch.no_grad():
        draws = [net(x) for _ in range(6)]
    # mixture moments from the raw second moment: E[Σ_s + μ_s μ_sᵀ] − μ̄ μ̄ᵀ
    mus = torch.stack([d[0] for d in draws])
    covs = torch.stack([d[1] @ d[1].mT for d in draws])
    mean = mus.mean(0)
    second = (covs + mus.unsqueeze(-1) * mus.unsqueeze(-2)).mean(0)
    torch.testing.assert_close(pred.mean, mean)
    torch.testing.assert_close(pred.cov, second - mean.unsqueeze(-1) * mean.unsqueeze(-2))
    torch.testing.assert_close(pred.aleatoric, covs.mean(0))
    torch.testing.assert_close(pred.cov, pred.aleatoric + pred.epistemic)
    assert (torch.linalg.eigvalsh(pred.epistemic) > -1e-7).all()
    assert (torch.diagonal(pred.epistemic, 0, 1, 2) > 0).all()


def test_epistemic_grows_with_posterior_width():
    x, _ = _batch(b=3)
    spreads = []
    for rho in (-8.0, -4.0):
        torch.manual_seed(0)
        net = ShapeNet(ShapeConfig(bayesian=True, filters=SMALL, rho_init=(rho, 0.01))).eval()
        spreads.append(torch.diagonal(net.predict(x, samples=8).epistemic, 0, 1, 2).mean())
    assert spreads[1] > 100 * spreads[0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"targets": ()}, "non-empty"),
        ({"targets": ("e1", "g1")}, "target must be one of e1, e2, z"),
        ({"targets": ("e1", "e1")}, "repeat"),
        ({"prelu": "shared"}, "prelu must be one of element, channel"),
        ({"filters": (8, 0)}, "filters"),
        ({"prior_std": 0.0}, "prior_std"),
    ],
)
def test_config_errors(change, match):
    with pytest.raises(CosmobenchError, match=match):
        ShapeConfig(**change)


def test_config_round_trip_and_columns():
    cfg = ShapeConfig(targets=("e2", "z"), bayesian=True, flipout=True)
    assert ShapeConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.columns == ("e2", "redshift")
    with pytest.raises(CosmobenchError, match="no field"):
        ShapeConfig.from_dict({"target": ["e1"]})


def test_target_order_is_respected():
    net = build_model("cnn", {"targets": ["z", "e1"], "filters": list(SMALL)})
    x, y = _batch(t=2)
    assert net(x)[0].shape == (5, 2) and net.targets == ("z", "e1")
    # the data columns follow the targets' order: y[:, 0] is the redshift, y[:, 1] is e1 ...
    assert net.config.columns == ("redshift", "e1")
    # ... and the loss reads y in the order of the outputs: the NLL of (loc, scale_tril)
    loc, tril = net(x)
    nll = -torch.distributions.MultivariateNormal(loc, scale_tril=tril).log_prob(y).mean()
    torch.testing.assert_close(net.loss(x, y), nll)
    assert not torch.allclose(net.loss(x, y.flip(1)), nll)
