"""``generate``: the store, resume, noise, sharding across ranks, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.generate.conftest import write_runs

from cosmobench.cli import main
from cosmobench.errors import CosmobenchError
from cosmobench.generate import GalaxySampler, GenerateConfig, generate, load_generator
from cosmobench.generate.run import sky_levels
from cosmobench.generate.sampler import galaxy_noise, galaxy_seeds
from cosmobench.store import create_or_resume, open_dataset


def _cfg(runs: tuple[Path, Path], **kw) -> GenerateConfig:
    return GenerateConfig(vae_run=str(runs[0]), flow_run=str(runs[1]), **{"n": 10, "seed": 3,
                                                                          "chunk_size": 4, **kw})


def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def test_store_contents(runs, tmp_path):
    out = generate(_cfg(runs), tmp_path / "gen.zarr", progress=False, png=tmp_path / "g.png")
    ds = open_dataset(out)
    assert ds.kind == "generation" and ds.n == 10 and ds.image_names == ("noiseless",)
    x = ds.images("noiseless")
    assert x.shape == (10, 6, 64, 64) and np.isfinite(x).all() and (x >= 0).all()
    np.testing.assert_array_equal(ds.column("index"), np.arange(10))
    seeds = galaxy_seeds(3, range(10))
    np.testing.assert_array_equal(ds.column("seed"), seeds)
    vae, flow, norm, fps = load_generator(*runs)
    z, imgs = GalaxySampler(vae, flow, norm).sample_noise(galaxy_noise(seeds, 8))
    np.testing.assert_allclose(ds.column("latent"), z.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x, imgs.numpy(), rtol=1e-5, atol=1e-2)
    assert ds.attrs["generator"]["vae_fingerprint"] == fps["vae"]
    assert ds.config["vae_run"] == str(runs[0].resolve())
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_interrupted_run_resumes_to_the_same_store(runs, tmp_path, monkeypatch):
    whole = open_dataset(generate(_cfg(runs), tmp_path / "whole.zarr", progress=False))
    calls = {"n": 0}
    original = GalaxySampler.sample_noise

    def dying(self, eps):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, eps)

    monkeypatch.setattr(GalaxySampler, "sample_noise", dying)
    out = tmp_path / "cut.zarr"
    with pytest.raises(KeyboardInterrupt):
        generate(_cfg(runs), out, progress=False)
    with pytest.raises(CosmobenchError, match="incomplete"):
        open_dataset(out)
    monkeypatch.setattr(GalaxySampler, "sample_noise", original)
    generate(_cfg(runs), out, progress=False)  # resumes: only the missing chunks
    np.testing.assert_array_equal(open_dataset(out).images("noiseless"), whole.images("noiseless"))
    before = (out / "noiseless").stat().st_mtime_ns
    generate(_cfg(runs), out, progress=False)  # complete: nothing to do
    assert (out / "noiseless").stat().st_mtime_ns == before


def test_poisson_noise_of_source_plus_sky(runs, tmp_path):
    ds = open_dataset(generate(_cfg(runs, noise=True), tmp_path / "n.zarr", progress=False))
    x, y = ds.images("noiseless").astype(np.float64), ds.images("noisy").astype(np.float64)
    sky = sky_levels()[None, :, None, None]
    pull = (y - x) / np.sqrt(x + sky)  # Poisson(x + B) - B: mean x, variance x + B
    assert abs(pull.mean()) < 0.02
    np.testing.assert_allclose(pull.var(axis=(0, 2, 3)), 1.0, rtol=0.05)


def test_bad_input_is_one_line_and_loses_nothing(runs, tmp_path, capsys):
    vae, flow = (str(p) for p in runs)
    base = ["generate", "--vae", vae, "--flow", flow, "--no-progress"]
    assert "n must be an integer > 0" in _cli_error(capsys, [*base, "--n", "0", "--out",
                                                             str(tmp_path / "a.zarr")])
    # a flow trained on another VAE (another fingerprint), or with another latent size
    _, other_flow = write_runs(tmp_path / "o", flow_vae_fp="0123456789abcdef")
    err = _cli_error(capsys, ["generate", "--vae", vae, "--flow", str(other_flow), "--n", "2",
                              "--out", str(tmp_path / "b.zarr")])
    assert "trained on another VAE" in err
    _, small_flow = write_runs(tmp_path / "s", latent=4)
    err = _cli_error(capsys, ["generate", "--vae", vae, "--flow", str(small_flow), "--n", "2",
                              "--out", str(tmp_path / "b.zarr")])
    assert "latent size 8" in err
    err = _cli_error(capsys, ["generate", "--vae", flow, "--flow", vae, "--n", "2", "--out",
                              str(tmp_path / "b.zarr")])
    assert "holds a flow run; expected a vae run" in err
    # a truncated checkpoint
    cut_vae, cut_flow = write_runs(tmp_path / "t")
    data = (cut_vae / "model.pt").read_bytes()
    (cut_vae / "model.pt").write_bytes(data[: len(data) // 2])
    err = _cli_error(capsys, ["generate", "--vae", str(cut_vae), "--flow", str(cut_flow),
                              "--n", "2", "--out", str(tmp_path / "b.zarr")])
    assert "truncated" in err
    assert not (tmp_path / "b.zarr").exists()
    # an output that is another kind of store, or another generation: untouched
    sim = tmp_path / "sim.zarr"
    create_or_resume(sim, 4, 2, "simulation", {"n": 4}, {"index": "int64"}, ("noiseless",))
    listing = sorted(p.relative_to(sim) for p in sim.rglob("*"))
    err = _cli_error(capsys, [*base, "--n", "4", "--out", str(sim)])
    assert "is a simulation data set" in err
    assert sorted(p.relative_to(sim) for p in sim.rglob("*")) == listing
    gen = generate(_cfg(runs, n=4), tmp_path / "g.zarr", progress=False)
    err = _cli_error(capsys, [*base, "--n", "5", "--out", str(gen)])
    assert "exists with another config" in err
    assert open_dataset(gen).n == 4
    for argv in (["--precision", "fp16"], ["--constants", "hsc"], ["--chunk-size", "0"]):
        err = _cli_error(capsys, [*base, "--n", "2", "--out", str(tmp_path / "c.zarr"), *argv])
        assert "must be" in err
    assert not (tmp_path / "c.zarr").exists()


def test_same_store_on_two_ranks(runs, tmp_path):
    """torchrun with 2 CPU processes: each writes its chunks; galaxies equal 1 process's."""
    one = generate(_cfg(runs, n=9, chunk_size=2), tmp_path / "one.zarr", progress=False)
    two = tmp_path / "two.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd() / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(29500 + os.getpid() % 1000), "-m", "cosmobench",
           "--", "generate",  # '--': torchrun's parser would read --n as its --nnodes
           "--vae", str(runs[0]), "--flow", str(runs[1]), "--n", "9", "--seed", "3",
           "--chunk-size", "2", "--out", str(two), "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = open_dataset(one), open_dataset(two)
    assert b.complete and b.n == 9
    np.testing.assert_array_equal(a.column("seed"), b.column("seed"))
    np.testing.assert_allclose(a.column("latent"), b.column("latent"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.images("noiseless"), b.images("noiseless"), rtol=1e-5,
                               atol=1e-2)


def test_on_device(runs, tmp_path, device):
    ds = open_dataset(generate(_cfg(runs, n=3), tmp_path / "d.zarr", device=device,
                               progress=False))
    x = torch.from_numpy(ds.images("noiseless"))
    assert torch.isfinite(x).all() and (x >= 0).all()
