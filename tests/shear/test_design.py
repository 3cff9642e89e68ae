"""The shear-test store: layout, paired noise, ring partners, and its config checks."""

import numpy as np
import pytest

from cosmobench.errors import CosmobenchError
from cosmobench.shear import load_design
from cosmobench.sim import SimConfig, Simulator
from cosmobench.store import open_dataset


def test_layout_and_columns(shear_store):
    ds = open_dataset(shear_store)
    assert ds.n == 32
    d = load_design(ds)
    assert d.n_groups == 8 and d.g == pytest.approx(0.02)
    assert np.array_equal(ds.column("ring_partner"), np.arange(32) ^ 1)
    assert np.array_equal(d.component, np.arange(8) % 2)


def test_plus_minus_copies_share_their_noise(shear_store):
    ds = open_dataset(shear_store)
    noisy = ds.images("noisy").astype(np.float64)
    clean = ds.images("noiseless").astype(np.float64)
    for k in range(8):
        for rot in (0, 1):
            p, m = 4 * k + rot, 4 * k + rot + 2
            diff = (noisy[p] - noisy[m]) - (clean[p] - clean[m])
            assert np.abs(diff).max() < 0.05  # float32 rounding of counts ~1e3
            assert np.abs(noisy[p] - clean[p]).std() > 1.0  # there is noise
    # the two ring members have independent noise
    r0 = (noisy[0] - clean[0]).ravel()
    r1 = (noisy[1] - clean[1]).ravel()
    assert abs(np.corrcoef(r0, r1)[0, 1]) < 0.05


def test_ring_partner_is_rotated_by_90_degrees(shear_store):
    ds = open_dataset(shear_store)
    e_int = np.stack([ds.column("e1_int"), ds.column("e2_int")], 1)
    partner = np.asarray(ds.column("ring_partner"))
    assert np.allclose(e_int[partner], -e_int, atol=1e-6)  # spin 2: 90° flips the sign
    e = np.stack([ds.column("e1"), ds.column("e2")], 1)
    # -(e ⊕ g) = (-e) ⊕ (-g): the four sheared ellipticities of a galaxy sum to zero
    assert np.abs(e.reshape(-1, 4, 2).sum(1)).max() < 1e-6


def test_deterministic_and_same_as_in_memory(shear_store):
    ds = open_dataset(shear_store)
    cfg = SimConfig.from_dict(ds.config)
    images, cols = Simulator(cfg).shear_quad(3)
    assert np.array_equal(images["noisy"], ds.images("noisy", slice(12, 16)))
    assert [c["sign"] for c in cols] == [1, 1, -1, -1]


def test_config_checks():
    with pytest.raises(CosmobenchError, match="multiple of 4"):
        SimConfig(n=4, shear_test=0.02, chunk_size=10)
    with pytest.raises(CosmobenchError, match="--ring"):
        SimConfig(n=4, shear_test=0.02, ring=True)
    assert SimConfig(n=5, shear_test=0.02, chunk_size=8).n_images == 20


def test_not_a_shear_store(tiny_dataset):
    with pytest.raises(CosmobenchError, match="not a shear-test store"):
        load_design(open_dataset(tiny_dataset))


def test_progress_counts_images_of_a_shear_test(tmp_path, capsys):
    """A shear-test store's progress counts images (4 per galaxy), and says so."""
    from cosmobench.sim import simulate

    cfg = SimConfig(n=2, seed=5, shear_test=0.02, measure=False, chunk_size=4)
    simulate(cfg, tmp_path / "s.zarr", progress=True)
    err = capsys.readouterr().err
    assert "8/8" in err and "images" in err and "galaxies" not in err
