"""``benchmarks/shear_noise_probe.py`` at a toy size: it measures what it says."""

import re
from pathlib import Path

import numpy as np
import torch

from cosmobench.store import open_dataset
from cosmobench.train import TrainConfig, fit, load_run, make_task

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "shear_noise_probe.py"


def test_noise_probe_reports_the_networks_own_means_and_paired_shifts(shear_store, tmp_path,
                                                                      load_script):
    run = tmp_path / "cnn"
    fit(make_task("cnn"), str(shear_store), TrainConfig(epochs=1, batch_size=8), run,
        progress=False)  # fmt: skip
    mod = load_script(SCRIPT, "probe")
    out = tmp_path / "probe.md"
    mod.main(["--store", str(shear_store), "--run", str(run), "--n", "16", "--out", str(out),
              "--threads", "1"])  # fmt: skip
    rows = [r for r in out.read_text().splitlines() if r.startswith("| ") and "---" not in r]
    assert [r.split("|")[1].strip() for r in rows[1:]] == [
        "as stored", "+ white noise, independent per band", "+ one white-noise field in all bands"
    ]
    model, _ = load_run(run, expect_kind=("cnn",))
    x = torch.from_numpy(open_dataset(shear_store).images("noisy", slice(0, 16)))
    with torch.no_grad():
        mean = model.predict(x, samples=1).mean[:, :2].double().numpy().mean(0)
    stored = [float(v) for v in rows[1].split("|")[2:4]]
    np.testing.assert_allclose(stored, mean, atol=1e-4)
    for r in rows[2:]:  # ⟨e⟩ with noise = ⟨e⟩ as stored + the paired shift
        e1, e2 = (float(v) for v in r.split("|")[2:4])
        s1, s2 = (float(re.split(" ± ", v.strip())[0]) for v in r.split("|")[4:6])
        np.testing.assert_allclose([e1 - s1, e2 - s2], stored, atol=2e-4)
