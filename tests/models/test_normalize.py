"""BandNormalizer: I_b from data, tanh(arcsinh(x / (I_b/2.5))), and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint, save_checkpoint
from cosmobench.models import BandNormalizer


def _images(n=20, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.array([10.0, 100.0, 500.0, 800.0, 900.0, 300.0], dtype=np.float32)
    return (rng.gamma(0.5, 1.0, (n, 6, 16, 16)) * scale[:, None, None]).astype(np.float32)


def test_fit_is_mean_of_per_band_max():
    imgs = _images()
    expected = imgs.max(axis=(2, 3)).mean(0)
    norm = BandNormalizer.fit(imgs)
    np.testing.assert_allclose(norm.band_max.numpy(), expected, rtol=1e-6)
    chunks = BandNormalizer.fit([imgs[:7], torch.from_numpy(imgs[7:])])
    torch.testing.assert_close(chunks.band_max, norm.band_max)
    from_iter = BandNormalizer.fit(iter([(0, imgs[:5]), (5, imgs[5:])]))  # ds.iter_chunks pairs
    torch.testing.assert_close(from_iter.band_max, norm.band_max)


def test_forward_is_tanh_arcsinh():
    imgs = _images()
    norm = BandNormalizer.fit(imgs)
    s = norm.band_max.numpy().astype(np.float64)[:, None, None] / 2.5
    ref = np.tanh(np.arcsinh(imgs.astype(np.float64) / s))
    np.testing.assert_allclose(norm(torch.from_numpy(imgs)).numpy(), ref, atol=1e-6)


def test_inverse_is_exact_and_finite():
    imgs = _images()
    imgs[:, :, 0, 0] = -0.5 * imgs[:, :, 1, 1]  # negative (noisy, background-subtracted) pixels
    norm = BandNormalizer.fit(imgs)
    x = torch.from_numpy(imgs)
    back = norm.inverse(norm(x))
    torch.testing.assert_close(back, x, rtol=2e-5, atol=1e-4)
    edges = norm.inverse(torch.tensor([-1.0, 1.0, 0.0]).view(1, 1, 3, 1).expand(1, 6, 3, 1))
    assert torch.isfinite(edges).all()
    huge = norm(torch.full((1, 6, 1, 1), 1e30))
    assert (huge <= 1).all() and torch.isfinite(norm.inverse(huge)).all()


def test_monotonic_and_odd():
    norm = BandNormalizer([1.0] * 6)
    x = torch.linspace(-50, 50, 1001).view(1, 1, 1, -1).expand(1, 6, 1, -1)
    y = norm(x)
    assert (y.diff(dim=-1) > 0).all() and (y.abs() < 1).all()
    torch.testing.assert_close(norm(-x), -y)


def test_state_round_trips(tmp_path):
    norm = BandNormalizer.fit(_images())
    again = BandNormalizer.from_dict(norm.to_dict())
    torch.testing.assert_close(again.band_max, norm.band_max)
    path = save_checkpoint(
        tmp_path / "n.pt", {"normalizer": norm.to_dict(), "sd": norm.state_dict()}
    )
    state = load_checkpoint(path)
    other = BandNormalizer([1.0] * 6)
    other.load_state_dict(state["sd"])
    torch.testing.assert_close(other.band_max, norm.band_max)
    assert "I_b=[" in repr(norm)


def test_bad_input():
    with pytest.raises(CosmobenchError, match="I_b"):
        BandNormalizer([1.0, 0.0])
    imgs = _images()
    imgs[0, 0, 0, 0] = np.nan
    with pytest.raises(CosmobenchError, match="NaN"):
        BandNormalizer.fit(imgs)
    with pytest.raises(CosmobenchError, match="no images"):
        BandNormalizer.fit([])
    with pytest.raises(CosmobenchError, match=r"\(N, C, H, W\)"):
        BandNormalizer.fit(np.zeros((6, 4, 4)))


def test_in_place_inverse_gives_the_same_bits():
    """inverse_ (the generator's tail) is inverse computed in place: same bits, same tensor."""
    norm = BandNormalizer([1e3, 2e3, 5e2, 1e4, 3e3, 7e2])
    y = torch.rand(3, 6, 8, 8) * 2 - 1
    y[0, 0, 0, :3] = torch.tensor([1.0, -1.0, 0.0])  # the clamped edges
    ref = norm.inverse(y)
    work = y.clone()
    out = norm.inverse_(work)
    assert out.data_ptr() == work.data_ptr() and torch.equal(out, ref)
