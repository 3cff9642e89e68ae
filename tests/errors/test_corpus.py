"""The bad-input corpus: every command, fed what a hostile new user would feed it.

Each case: the command line, the exit code, a fragment of the one line it must print, and
what must not be left behind. Every error is one line starting with ``error:`` (exit 2), never
a traceback; a case that exits 0 must say what it found. Run in-process through
``cosmobench.cli.main`` (what the console script runs); ``test_subprocess.py`` runs a few
through the real executable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest


class Case(NamedTuple):
    id: str
    argv: str  # placeholders: {sim} {gen} {cnn} {tmp} {ro} {full} {b[name]} ...
    code: int
    fragment: str  # must appear in the error line (code 2) or in the output (code 0)
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards
    stream: str = "err"


C = Case
E = 2
NOPROG = ("simulate", "train", "evaluate", "generate", "evaluate-generation", "bench")

SIMULATE = [
    C("sim-n-zero", "simulate --n 0 --out {tmp}/a.zarr", E, "--n must be", ("{tmp}/a.zarr",)),
    C("sim-n-negative", "simulate --n -5 --out {tmp}/a.zarr", E, "--n must be"),
    C("sim-n-text", "simulate --n many --out {tmp}/a.zarr", E, "Invalid value"),
    C("sim-workers-zero", "simulate --n 4 --workers 0 --out {tmp}/a.zarr", E, "--workers"),
    C(
        "sim-years-and-visits",
        "simulate --n 4 --years 1 --visits 1,1,1,1,1,1 --out {tmp}/a.zarr",
        E,
        "not both",
    ),
    C("sim-visits-short", "simulate --n 4 --visits 1,2,3 --out {tmp}/a.zarr", E, "six positive"),
    C("sim-visits-zero", "simulate --n 4 --visits 0,1,1,1,1,1 --out {tmp}/a.zarr", E, "--visits"),
    C("sim-shear-text", "simulate --n 4 --shear abc --out {tmp}/a.zarr", E, "--shear must be"),
    C(
        "sim-shear-random-text",
        "simulate --n 4 --shear random:x --out {tmp}/a.zarr",
        E,
        "--shear must be",
    ),
    C("sim-psf", "simulate --n 4 --psf gauss --out {tmp}/a.zarr", E, "psf must be one of"),
    C("sim-population", "simulate --n 4 --population martian --out {tmp}/a.zarr", E, "population"),
    C("sim-preset", "simulate --n 4 --preset nope --out {tmp}/a.zarr", E, "preset"),
    C("sim-chunk-zero", "simulate --n 4 --chunk-size 0 --out {tmp}/a.zarr", E, "chunk_size"),
    C("sim-psf-fwhm-negative", "simulate --n 4 --psf-fwhm -1 --out {tmp}/a.zarr", E, "psf_fwhm"),
    C("sim-years-negative", "simulate --n 4 --years -1 --out {tmp}/a.zarr", E, "years"),
    C("sim-unknown-option", "simulate --n 4 --colour red --out {tmp}/a.zarr", E, "No such option"),
    C("sim-no-out", "simulate --n 4", E, "Missing option"),
    C("sim-out-file", "simulate --n 4 --out {b[text]}", E, "exists and is not a"),
    C("sim-out-below-file", "simulate --n 4 --out {b[text]}/a.zarr", E, "is a file, not a folder"),
    C("sim-out-plain-folder", "simulate --n 4 --out {b[nonempty]}", E, "not a cosmobench data set"),
    C("sim-out-plain-zarr", "simulate --n 4 --out {b[plain_zarr]}", E, "not a cosmobench"),
    C("sim-out-other-config", "simulate --n 8 --seed 5 --out {sim}", E, "another config"),
    C("sim-out-generation", "simulate --n 16 --out {gen}", E, "another config"),
    C("sim-out-garbage-root", "simulate --n 4 --out {b[garbage_root]}", E, "corrupt"),
    C(
        "sim-huge-n",
        "simulate --n 100000000000 --out {tmp}/huge.zarr",
        E,
        "--ignore-free-space",
        ("{tmp}/huge.zarr",),
    ),
    C(
        "sim-readonly",
        "simulate --n 4 --out {ro}/a.zarr",
        E,
        "Read-only file system",
        ("{ro}/a.zarr",),
    ),
    C(
        "sim-full-estimate",
        "simulate --n 64 --out {full}/a.zarr",
        E,
        "needs about",
        ("{full}/a.zarr",),
    ),
    C(
        "sim-scheduler-unreachable",
        "simulate --n 4 --scheduler tcp://127.0.0.1:9 --out {tmp}/a.zarr",
        E,
        "cannot reach",
        ("{tmp}/a.zarr",),
    ),
    C(
        "sim-resume-missing-chunk-ok",
        "simulate --n 16 --seed 1 --chunk-size 8 --no-measure --out {copy[missing_chunk]}",
        0,
        "wrote 16 galaxies",
        stream="out",
    ),
]

INSPECT = [
    C("insp-missing", "inspect {tmp}/nope.zarr", E, "does not exist"),
    C("insp-text-file", "inspect {b[text]}", E, "not a cosmobench data set"),
    C("insp-folder", "inspect {b[nonempty]}", E, "not a cosmobench data set"),
    C("insp-plain-zarr", "inspect {b[plain_zarr]}", E, "not a cosmobench data set"),
    C("insp-garbage-root", "inspect {b[garbage_root]}", E, "corrupt"),
    C("insp-garbage-array", "inspect {b[garbage_array]}", E, "array e1"),
    C("insp-codec", "inspect {b[codec]}", E, "unknown or unsupported codec"),
    C("insp-missing-array", "inspect {b[missing_array]}", E, "arrays missing: e1"),
    C("insp-newer", "inspect {b[newer]}", E, "upgrade"),
    C("insp-foreign", "inspect {b[foreign]}", E, "not a cosmobench data set"),
    C("insp-bad-kind", "inspect {b[bad_kind]}", E, "kind must be one of"),
    C("insp-missing-chunk", "inspect {b[missing_chunk]}", 0, "have no image files", stream="out"),
    C("insp-interrupted", "inspect {b[missing_done]}", 0, "incomplete", stream="out"),
    C("insp-nan-pixels", "inspect {b[nan_pixels]}", 0, "1 of 16 galaxies read", stream="out"),
    C(
        "insp-png-txt",
        "inspect {sim} --png {tmp}/grid.txt",
        E,
        "unsupported image format",
        ("{tmp}/grid.txt",),
    ),
    C("insp-png-no-suffix", "inspect {sim} --png {tmp}/grid", E, "unsupported image format"),
    C("insp-png-folder", "inspect {sim} --png {b[empty_dir]}", E, "unsupported image format"),
    C("insp-png-folder-png", "inspect {sim} --png {b[png_dir]}", E, "is a folder, not a file"),
    C(
        "insp-png-readonly",
        "inspect {sim} --png {ro}/g.png",
        E,
        "Read-only file system",
        ("{ro}/g.png",),
    ),
    C("insp-png-below-file", "inspect {sim} --png {b[text]}/g.png", E, "is a file"),
    C("insp-galaxies-zero", "inspect {sim} --galaxies 0 --png {tmp}/g.png", E, "--galaxies"),
]


def _train_cases(kind: str) -> list[Case]:
    pre = f"train {kind}" + (" --vae {vae}" if kind == "flow" else "")
    run = "{tmp}/run"
    cases = [
        C("data-missing", f"{pre} --data {{tmp}}/no.zarr --out {run}", E, "does not exist"),
        C("data-text", f"{pre} --data {{b[text]}} --out {run}", E, "not a cosmobench data set"),
        C("data-garbage-array", f"{pre} --data {{b[garbage_array]}} --out {run}", E, "array e1"),
        C("data-codec", f"{pre} --data {{b[codec]}} --out {run}", E, "codec"),
        C(
            "data-missing-chunk",
            f"{pre} --data {{b[missing_chunk]}} --out {run}",
            E,
            "image files are missing",
        ),
        C("data-interrupted", f"{pre} --data {{b[missing_done]}} --out {run}", E, "incomplete"),
        C("out-file", f"{pre} --data {{sim}} --out {{b[text]}}", E, "exists and is not a"),
        C(
            "out-readonly",
            f"{pre} --data {{sim}} --out {{ro}}/run",
            E,
            "Read-only file system",
            ("{ro}/run",),
        ),
        C(
            "out-full",
            f"{pre} --data {{sim}} --out {{full}}/run",
            E,
            "needs about",
            ("{full}/run",),
        ),
        C("epochs-zero", f"{pre} --data {{sim}} --out {run} --epochs 0", E, "epochs"),
        C("batch-zero", f"{pre} --data {{sim}} --out {run} --batch-size 0", E, "batch size"),
        C("lr-negative", f"{pre} --data {{sim}} --out {run} --lr -1", E, "learning rate"),
        C("precision", f"{pre} --data {{sim}} --out {run} --precision fp8", E, "precision"),
        C("device", f"{pre} --data {{sim}} --out {run} --device tpu9", E, "device"),
        C(
            "val-fraction",
            f"{pre} --data {{sim}} --out {run} --val-fraction 1.5",
            E,
            "validation fraction",
        ),
        C("resume-nothing", f"{pre} --data {{sim}} --out {run} --resume", E, ""),
    ]
    if kind in ("cnn", "bnn"):
        cases += [
            C("data-generation", f"{pre} --data {{gen}} --out {run}", E, "e1"),
            C("targets", f"{pre} --data {{sim}} --out {run} --targets e1,colour", E, "colour"),
            C("nan-label", f"{pre} --data {{b[nan_label]}} --out {run}", E, "--drop-nonfinite"),
            C(
                "init-from-pickle",
                f"{pre} --data {{sim}} --out {run} --init-from {{b[pickle_run]}}",
                E,
                "not a torch checkpoint",
            ),
        ]
    if kind == "flow":
        cases += [
            C(
                "vae-is-cnn",
                "train flow --vae {cnn} --data {sim} --out {tmp}/run",
                E,
                "holds a cnn run",
            ),
            C(
                "vae-missing",
                "train flow --vae {b[no_run]} --data {sim} --out {tmp}/run",
                E,
                "does not exist",
            ),
            C(
                "vae-pickle",
                "train flow --vae {b[pickle_run]} --data {sim} --out {tmp}/run",
                E,
                "not a torch checkpoint",
            ),
        ]
    return [c._replace(id=f"train-{kind}-{c.id}") for c in cases]


TRAIN = [c for k in ("cnn", "bnn", "vae", "flow") for c in _train_cases(k)]

EVAL = "evaluate {cnn} --data {sim} --out {tmp}/ev"
EVALUATE = [
    C(
        "ev-run-missing",
        "evaluate {b[no_run]} --data {sim} --out {tmp}/ev",
        E,
        "run folder",
        ("{tmp}/ev",),
    ),
    C(
        "ev-run-unfinished",
        "evaluate {b[unfinished_run]} --data {sim} --out {tmp}/ev",
        E,
        "--resume",
    ),
    C("ev-run-vae", "evaluate {vae} --data {sim} --out {tmp}/ev", E, "holds a vae run"),
    C(
        "ev-run-pickle",
        "evaluate {b[pickle_run]} --data {sim} --out {tmp}/ev",
        E,
        "not a torch checkpoint",
    ),
    C(
        "ev-run-truncated",
        "evaluate {b[truncated_run]} --data {sim} --out {tmp}/ev",
        E,
        "truncated, corrupt",
    ),
    C(
        "ev-run-garbage",
        "evaluate {b[garbage_run]} --data {sim} --out {tmp}/ev",
        E,
        "not a torch checkpoint",
    ),
    C(
        "ev-run-objects",
        "evaluate {b[objects_run]} --data {sim} --out {tmp}/ev",
        E,
        "holds Python objects",
    ),
    C(
        "ev-run-foreign",
        "evaluate {b[foreign_run]} --data {sim} --out {tmp}/ev",
        E,
        "not a cosmobench model file",
    ),
    C("ev-data-missing", "evaluate {cnn} --data {tmp}/no.zarr --out {tmp}/ev", E, "does not exist"),
    C("ev-data-generation", "evaluate {cnn} --data {gen} --out {tmp}/ev", E, "no column"),
    C(
        "ev-data-missing-chunk",
        "evaluate {cnn} --data {b[missing_chunk]} --out {tmp}/ev",
        E,
        "chunk 1",
    ),
    C(
        "ev-data-garbage-array",
        "evaluate {cnn} --data {b[garbage_array]} --out {tmp}/ev",
        E,
        "array e1",
    ),
    C("ev-data-codec", "evaluate {cnn} --data {b[codec]} --out {tmp}/ev", E, "codec"),
    C(
        "ev-nan-pixels",
        "evaluate {cnn} --data {b[nan_pixels]} --out {tmp}/ev",
        E,
        "--exclude-nonfinite",
        ("{tmp}/ev/metrics.json",),
    ),
    C("ev-nan-label", "evaluate {cnn} --data {b[nan_label]} --out {tmp}/ev", E, "1 of 16 galaxies"),
    C(
        "ev-nan-excluded",
        "evaluate {cnn} --data {b[nan_label]} --out {tmp}/ev --no-figures --exclude-nonfinite",
        0,
        "1 of 16 galaxies with NaN/inf pixels",
    ),
    C("ev-snr-bins-1000", EVAL + " --snr-bins 1000", E, "--snr-bins 1000 is more than"),
    C("ev-snr-bins-zero", EVAL + " --snr-bins 0", E, "snr_bins"),
    C("ev-batch-zero", EVAL + " --batch-size 0", E, "batch_size"),
    C("ev-samples-zero", "evaluate {bnn} --data {sim} --out {tmp}/ev --samples 0", E, "samples"),
    C("ev-device-cuda9", EVAL + " --device cuda:9", E, "cuda"),
    C("ev-device-nonsense", EVAL + " --device abacus", E, "device"),
    C("ev-out-file", "evaluate {cnn} --data {sim} --out {b[text]}", E, "exists and is not a"),
    C("ev-out-readonly", "evaluate {cnn} --data {sim} --out {ro}/ev", E, "Read-only file system"),
    C("ev-out-full", "evaluate {cnn} --data {sim} --out {full}/ev", E, "needs about"),
]

GEN = "generate --vae {vae} --flow {flow} --n 8"
GENERATE = [
    C(
        "gen-n-zero",
        "generate --vae {vae} --flow {flow} --n 0 --out {tmp}/g.zarr",
        E,
        "n must be",
        ("{tmp}/g.zarr",),
    ),
    C(
        "gen-vae-missing",
        "generate --vae {b[no_run]} --flow {flow} --n 8 --out {tmp}/g.zarr",
        E,
        "does not exist",
    ),
    C(
        "gen-flow-missing",
        "generate --vae {vae} --flow {b[no_run]} --n 8 --out {tmp}/g.zarr",
        E,
        "does not exist",
    ),
    C(
        "gen-vae-is-cnn",
        "generate --vae {cnn} --flow {flow} --n 8 --out {tmp}/g.zarr",
        E,
        "cnn run",
    ),
    C(
        "gen-flow-is-vae",
        "generate --vae {vae} --flow {vae} --n 8 --out {tmp}/g.zarr",
        E,
        "vae run",
    ),
    C(
        "gen-vae-pickle",
        "generate --vae {b[pickle_run]} --flow {flow} --n 8 --out {tmp}/g.zarr",
        E,
        "not a torch checkpoint",
    ),
    C(
        "gen-cuda-graph",
        GEN + " --cuda-graph --out {tmp}/g.zarr",
        E,
        "--cuda-graph needs a CUDA device",
        ("{tmp}/g.zarr",),
    ),
    C(
        "gen-cuda-graph-compile",
        GEN + " --cuda-graph --compile --device cpu --out {tmp}/g.zarr",
        E,
        "--cuda-graph",
    ),
    C("gen-precision", GEN + " --precision fp8 --out {tmp}/g.zarr", E, "precision"),
    C("gen-constants", GEN + " --constants hubble --out {tmp}/g.zarr", E, "constants"),
    C("gen-chunk-zero", GEN + " --chunk-size 0 --out {tmp}/g.zarr", E, "chunk_size"),
    C("gen-batch-zero", GEN + " --batch-size 0 --out {tmp}/g.zarr", E, "batch"),
    C("gen-device", GEN + " --device abacus --out {tmp}/g.zarr", E, "device"),
    C("gen-out-file", GEN + " --out {b[text]}", E, "exists and is not a"),
    C("gen-out-simulation", GEN + " --out {sim}", E, "simulation data set"),
    C("gen-out-plain-folder", GEN + " --out {b[nonempty]}", E, "not a cosmobench"),
    C("gen-out-readonly", GEN + " --out {ro}/g.zarr", E, "Read-only file system"),
    C(
        "gen-out-full",
        "generate --vae {vae} --flow {flow} --n 200 --out {full}/g.zarr",
        E,
        "needs about",
        ("{full}/g.zarr",),
    ),
    C(
        "gen-huge-n",
        "generate --vae {vae} --flow {flow} --n 100000000000 --out {tmp}/g.zarr",
        E,
        "needs about",
        ("{tmp}/g.zarr",),
    ),
    C(
        "gen-png-txt",
        GEN + " --out {tmp}/g.zarr --png {tmp}/g.txt",
        E,
        "unsupported image format",
        ("{tmp}/g.zarr",),
    ),
    C(
        "gen-png-readonly",
        GEN + " --out {tmp}/g.zarr --png {ro}/g.png",
        E,
        "Read-only file system",
        ("{tmp}/g.zarr",),
    ),
    C("gen-years-negative", GEN + " --years -3 --out {tmp}/g.zarr", E, "years"),
]

EG = "evaluate-generation"
EVALUATE_GENERATION = [
    C(
        "eg-gen-is-simulation",
        EG + " {sim_b} --reference {sim} --out {tmp}/e",
        E,
        "not generated galaxies",
        ("{tmp}/e/fidelity.json",),
    ),
    C("eg-same-store", EG + " {gen} --reference {gen} --out {tmp}/e", E, "both"),
    C(
        "eg-ref-is-generation",
        EG + " {gen} --reference {copy[gen]} --out {tmp}/e",
        E,
        "the reference",
    ),
    C("eg-gen-missing", EG + " {tmp}/no.zarr --reference {sim} --out {tmp}/e", E, "does not exist"),
    C("eg-ref-missing", EG + " {gen} --reference {tmp}/no.zarr --out {tmp}/e", E, "does not exist"),
    C(
        "eg-ref-missing-chunk",
        EG + " {gen} --reference {b[missing_chunk]} --out {tmp}/e",
        E,
        "image files are missing",
    ),
    C("eg-ref-codec", EG + " {gen} --reference {b[codec]} --out {tmp}/e", E, "codec"),
    C("eg-n-zero", EG + " {gen} --reference {sim} --out {tmp}/e --n 0", E, "n must be"),
    C("eg-n-big", EG + " {gen} --reference {sim} --out {tmp}/e --n 1000", E, "n must be"),
    C("eg-out-file", EG + " {gen} --reference {sim} --out {b[text]}", E, "exists and is not a"),
    C("eg-out-readonly", EG + " {gen} --reference {sim} --out {ro}/e", E, "Read-only file system"),
    C("eg-out-full", EG + " {gen} --reference {sim} --out {full}/e", E, "needs about"),
    C("eg-gen-text", EG + " {b[text]} --reference {sim} --out {tmp}/e", E, "not a cosmobench"),
]

BENCH_FAST = "--repeats 1 --min-block 0.001 --warmup-max 0.1 --sim-galaxies 1"
BENCH = [
    C(
        "bench-unknown-workload",
        "bench fly --out {tmp}/r.json",
        E,
        "workload must be one of",
        ("{tmp}/r.json",),
    ),
    C("bench-out-folder", "bench simulate --out {b[empty_dir]}", E, "is a folder, not a file"),
    C("bench-out-text", "bench simulate --out {b[text]}", E, "--force"),
    C("bench-out-list-json", "bench simulate --out {b[json_list]}", E, "--force"),
    C(
        "bench-out-finished",
        "bench simulate " + BENCH_FAST + " --out {copy_file[results]}",
        E,
        "finished run",
    ),
    C(
        "bench-out-other-config",
        "bench train-cnn --out {copy_file[unfinished]}",
        E,
        "another configuration",
    ),
    C("bench-out-readonly", "bench simulate --out {ro}/r.json", E, "Read-only file system"),
    C("bench-out-below-file", "bench simulate --out {b[text]}/r.json", E, "is a file"),
    C("bench-device", "bench simulate --out {tmp}/r.json --device abacus", E, "device"),
    C("bench-device-cuda9", "bench simulate --out {tmp}/r.json --device cuda:9", E, "cuda"),
    C("bench-modes", "bench simulate --out {tmp}/r.json --modes turbo", E, "turbo"),
    C("bench-protocol", "bench simulate --out {tmp}/r.json --protocol fast", E, "protocol"),
    C(
        "bench-batch-sizes-text",
        "bench train-cnn --out {tmp}/r.json --batch-sizes a,b",
        E,
        "--batch-sizes must be",
    ),
    C(
        "bench-batch-sizes-empty",
        "bench train-cnn --out {tmp}/r.json --batch-sizes ,",
        E,
        "--batch-sizes must list",
    ),
    C("bench-n-text", "bench generate --out {tmp}/r.json --n x", E, "--n must be"),
    C("bench-repeats-zero", "bench simulate --out {tmp}/r.json --repeats 0", E, "repeats"),
    C(
        "bench-data-missing",
        "bench train-cnn --out {tmp}/r.json --data {tmp}/no.zarr",
        E,
        "does not exist",
        ("{tmp}/r.json",),
    ),
    C(
        "bench-data-missing-chunk",
        "bench train-cnn --out {tmp}/r.json --data {b[missing_chunk]}",
        E,
        "image files are missing",
        ("{tmp}/r.json",),
    ),
    C(
        "bench-data-generation",
        "bench train-cnn --batch-sizes 2 " + BENCH_FAST + " --out {tmp}/r.json --data {gen}",
        E,
        "every point of the benchmark failed",
    ),
]

COMPARE = [
    C(
        "cmp-results-folder",
        "compare {b[empty_dir]} --out {tmp}/rep",
        E,
        "is a folder, not a file",
        ("{tmp}/rep",),
    ),
    C("cmp-results-missing", "compare {tmp}/no.json --out {tmp}/rep", E, "does not exist"),
    C("cmp-results-text", "compare {b[text]} --out {tmp}/rep", E, "not valid JSON"),
    C(
        "cmp-records-string",
        "compare {b[records_string]} --out {tmp}/rep",
        E,
        "records must be a list",
    ),
    C("cmp-records-ints", "compare {b[records_ints]} --out {tmp}/rep", E, "records must be"),
    C("cmp-foreign", "compare {b[foreign_schema]} --out {tmp}/rep", E, "not a cosmobench"),
    C("cmp-newer", "compare {b[newer_results]} --out {tmp}/rep", E, "newer cosmobench"),
    C("cmp-no-env", "compare {b[no_env]} --out {tmp}/rep", E, "damaged"),
    C("cmp-json-list", "compare {b[json_list]} --out {tmp}/rep", E, "not a cosmobench"),
    C(
        "cmp-reference-wrong",
        "compare {results} --out {tmp}/rep --reference {b[ref_wrong]}",
        E,
        "not a reference",
        ("{tmp}/rep/report.md",),
    ),
    C(
        "cmp-reference-results",
        "compare {results} --out {tmp}/rep --reference {results}",
        E,
        "not a reference",
    ),
    C(
        "cmp-reference-lengths",
        "compare {results} --out {tmp}/rep --reference {b[ref_bad_lengths]}",
        E,
        "equal length",
    ),
    C(
        "cmp-reference-missing",
        "compare {results} --out {tmp}/rep --reference {tmp}/r.json",
        E,
        "reference must be one of",
    ),
    C(
        "cmp-reference-text",
        "compare {results} --out {tmp}/rep --reference {b[text]}",
        E,
        "not valid JSON",
    ),
    C("cmp-out-file", "compare {results} --out {b[text]}", E, "exists and is not a"),
    C("cmp-out-readonly", "compare {results} --out {ro}/rep", E, "Read-only file system"),
    C("cmp-no-results", "compare --out {tmp}/rep", E, "Missing argument"),
]

DEMO = [
    C(
        "demo-n-train-small",
        "demo --out {tmp}/d --n-train 10",
        E,
        "--n-train must be at least",
        ("{tmp}/d",),
    ),
    C("demo-n-test-small", "demo --out {tmp}/d --n-test 10", E, "--n-test must be at least"),
    C("demo-epochs-zero", "demo --out {tmp}/d --epochs 0", E, "epochs"),
    C("demo-workers-zero", "demo --out {tmp}/d --workers 0", E, "workers"),
    C("demo-n-generate-zero", "demo --out {tmp}/d --n-generate 0", E, "n_generate"),
    C("demo-budget-zero", "demo --out {tmp}/d --bench-budget 0", E, "bench_budget_s"),
    C("demo-device-cuda9", "demo --out {tmp}/d --device cuda:9", E, "cuda", ("{tmp}/d",)),
    C("demo-device-nonsense", "demo --out {tmp}/d --device abacus", E, "device", ("{tmp}/d",)),
    C(
        "demo-out-unrelated",
        "demo --out {b[nonempty]}",
        E,
        "not a demo's",
        ("{b[nonempty]}/data", "{b[nonempty]}/REPORT.md"),
    ),
    C("demo-out-file", "demo --out {b[text]}", E, "exists and is not a"),
    C("demo-out-readonly", "demo --out {ro}/d", E, "Read-only file system"),
    C("demo-out-full", "demo --out {full}/d", E, "needs about", ("{full}/d",)),
    C("demo-batch-size", "demo --out {tmp}/d --batch-size 4", E, "No such option"),
]

TOP = [
    C("top-unknown-command", "fly", E, "No such command"),
    C("top-train-unknown", "train rnn --data {sim} --out {tmp}/r", E, "No such command"),
    C("top-help", "--help", 0, "simulate", stream="out"),
]

SH = "shear {sim} --estimators truth --out {tmp}/s --no-progress"
SHEAR = [
    C("shear-not-a-shear-store", SH, E, "not a shear-test store", ("{tmp}/s/shear.json",)),
    C(
        "shear-store-missing",
        "shear {tmp}/no.zarr --estimators truth --out {tmp}/s",
        E,
        "does not exist",
        ("{tmp}/s/shear.json",),
    ),
    C(
        "shear-store-text",
        "shear {b[text]} --estimators truth --out {tmp}/s",
        E,
        "not a cosmobench",
    ),
    C(
        "shear-store-missing-chunk",
        "shear {b[missing_chunk]} --estimators truth --out {tmp}/s",
        E,
        "image files are missing",
    ),
    C("shear-store-codec", "shear {b[codec]} --estimators truth --out {tmp}/s", E, "codec"),
    C("shear-out-file", "shear {sim} --estimators truth --out {b[text]}", E, "exists and is not a"),
    C(
        "shear-out-readonly",
        "shear {sim} --estimators truth --out {ro}/s",
        E,
        "Read-only file system",
    ),
    C("shear-errors-unknown", SH + " --errors magic", E, "bootstrap"),
    C("shear-no-estimator", "shear {sim} --estimators , --out {tmp}/s", E, "estimator"),
]

CASES = (
    SIMULATE
    + INSPECT
    + TRAIN
    + EVALUATE
    + GENERATE
    + EVALUATE_GENERATION
    + BENCH
    + COMPARE
    + DEMO
    + TOP
    + SHEAR
)


def test_corpus_size_and_coverage():
    from cosmobench.cli import app

    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv.split()[0] for c in CASES}
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        assert name in commands, f"no case for {name}"
    for kind in ("cnn", "bnn", "vae", "flow"):
        assert any(c.argv.startswith(f"train {kind}") for c in CASES)


_LEFTOVER = re.compile(r"(\.tmp$|^\.cosmobench-probe-|\.partial-)")


class _Copies(dict):
    """``{copy[name]}``: a fresh copy of a broken store per case (the case may repair it)."""

    def __init__(self, world, tmp, files=False):
        super().__init__()
        self.world, self.tmp, self.files = world, tmp, files

    def __missing__(self, key):
        import shutil

        src = {"results": self.world.results, "gen": self.world.gen}.get(key)
        src = src or self.world.broken[key]
        dst = self.tmp / f"copy-{key}{src.suffix}"
        (shutil.copy if self.files else shutil.copytree)(src, dst)
        return str(dst)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world, scratch: Path, cli):
    if "{ro}" in case.argv and world.ro is None:
        pytest.skip("no read-only mount (needs root and mount)")
    if "{full}" in case.argv and world.full is None:
        pytest.skip("no small tmpfs (needs root and mount)")
    broken = world.broken
    fields = dict(
        sim=world.sim,
        sim_b=world.sim_b,
        gen=world.gen,
        cnn=world.cnn,
        bnn=world.bnn,
        vae=world.vae,
        flow=world.flow,
        results=world.results,
        tmp=scratch,
        ro=world.ro,
        full=world.full,
        b=broken,
        copy=_Copies(world, scratch),
        copy_file=_Copies(world, scratch, files=True),
    )
    argv = case.argv.format(**fields).split()
    if argv[0] in NOPROG:
        argv.append("--no-progress")
    code, out, err = cli(argv)
    assert "Traceback" not in out + err, err
    assert code == case.code, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        print(f"{case.id}: {lines[0]}")
        assert case.fragment in lines[0], lines[0]
        assert not out.strip(), f"printed before the error: {out[:300]}"
    else:
        assert case.fragment in (out if case.stream == "out" else err), out + err
    for p in case.absent:
        path = Path(p.format(**fields))
        assert not path.exists(), f"{path} was left behind"
    for top in (scratch, world.full, world.root, world.root / "broken"):
        if top is None:
            continue
        names = (
            (p.name for p in top.rglob("*"))
            if top in (scratch, world.full)
            else (p.name for p in top.iterdir())
        )
        left = [n for n in names if _LEFTOVER.search(n)]
        assert not left, f"left behind in {top}: {left}"
