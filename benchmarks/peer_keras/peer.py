"""A Keras + TensorFlow Probability peer of cosmobench's networks, written from the paper.

Arcelin (2021, arXiv:2106.02465), §2-3: the shape CNN is BatchNormalization, then four blocks
of a 3×3 'same' convolution and a stride-2 3×3 'same' convolution (32, 64, 128, 256 filters),
each followed by Keras's default ``PReLU`` (one slope per element), a ``Dense`` to the 9
parameters of a ``MultivariateNormalTriL`` over (e1, e2, z), trained with Adam (1e-3) on the
negative log-likelihood; the BNN swaps every convolution and the dense layer for TFP's
``Convolution2DReparameterization`` / ``DenseReparameterization`` (mean-field normal kernel,
N(0, 1) prior, KL / n_train added to the loss). Generation samples a masked autoregressive
flow (8 MADE transforms, hidden (256, 256), order reversed in between) over the VAE's 32-d
latent and decodes with the VAE's decoder (Dense 256, Dense 4096, four blocks of a stride-2
and a stride-1 'same' transposed convolution with PReLU, a 6-band 'same' convolution and a
sigmoid).

Runs in its own virtual environment (``requirements.txt``), never cosmobench's. Used by
``compare.py`` as a server: one JSON request per line on stdin, one JSON answer per line on
stdout. ``python peer.py --check`` builds the networks and checks their parameter counts
against the paper's (1,517,217 and 2,726,241).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFP's layers need Keras 2 (tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAPER_COUNTS = {"cnn": 1_517_217, "bnn": 2_726_241}
FILTERS = (32, 64, 128, 256)
N_TRAIN = 10_000  # KL weight 1 / n_train of the BNN's loss (any value: same work)


def setup(threads: int, inter_op: int | None = None):
    """Import TensorFlow with ``threads`` intra-op and ``inter_op`` (default: ``threads``)
    inter-op threads (before any op)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op or threads)
    return tf


def shape_net(bayesian: bool, n_train: int = N_TRAIN):
    """The paper's CNN (or BNN) as a Keras model ending in a MultivariateNormalTriL."""
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as keras

    tfd, tfpl = tfp.distributions, tfp.layers
    kl = lambda q, p, _: tfd.kl_divergence(q, p) / n_train  # noqa: E731

    def conv(f: int, stride: int):
        if bayesian:
            return tfpl.Convolution2DReparameterization(
                f, 3, strides=stride, padding="same", kernel_divergence_fn=kl
            )
        return keras.layers.Conv2D(f, 3, strides=stride, padding="same")

    inp = keras.Input((64, 64, 6))
    h = keras.layers.BatchNormalization()(inp)
    for f in FILTERS:
        h = keras.layers.PReLU()(conv(f, 1)(h))
        h = keras.layers.PReLU()(conv(f, 2)(h))
    h = keras.layers.Flatten()(h)
    size = tfpl.MultivariateNormalTriL.params_size(3)
    if bayesian:
        h = tfpl.DenseReparameterization(size, kernel_divergence_fn=kl)(h)
    else:
        h = keras.layers.Dense(size)(h)
    out = tfpl.MultivariateNormalTriL(3)(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=lambda y, d: -d.log_prob(y))
    del tf
    return model


def decoder(latent: int = 32):
    """The paper's VAE decoder (latent -> (64, 64, 6) in (0, 1))."""
    import tf_keras as keras

    z = keras.Input((latent,))
    h = keras.layers.PReLU()(keras.layers.Dense(256)(z))
    h = keras.layers.PReLU()(keras.layers.Dense(4 * 4 * 256)(h))
    h = keras.layers.Reshape((4, 4, 256))(h)
    for f in reversed(FILTERS):
        h = keras.layers.PReLU()(keras.layers.Conv2DTranspose(f, 3, 2, padding="same")(h))
        h = keras.layers.PReLU()(keras.layers.Conv2DTranspose(f, 3, 1, padding="same")(h))
    out = keras.layers.Conv2D(6, 3, padding="same", activation="sigmoid")(h)
    return keras.Model(z, out)


def flow(latent: int = 32, transforms: int = 8):
    """The latent MAF: 8 MADE transforms (hidden 256, 256), order reversed in between."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfb, tfd = tfp.bijectors, tfp.distributions
    bijectors = []
    for i in range(transforms):
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=[256, 256], activation="relu")
        bijectors.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made))
        if i < transforms - 1:
            bijectors.append(tfb.Permute(list(reversed(range(latent)))))
    base = tfd.MultivariateNormalDiag(loc=tf.zeros(latent))
    dist = tfd.TransformedDistribution(base, tfb.Chain(list(reversed(bijectors))))
    dist.log_prob(tf.zeros((1, latent)))  # build the MADE weights
    return dist


class Peer:
    """The peer's workloads, built once and timed on request."""

    def __init__(self, threads: int, inter_op: int | None = None) -> None:
        self.tf = setup(threads, inter_op)
        self.nets: dict[str, object] = {}
        self.gen = None

    def train(self, net: str, batch: int, warmup: int, repeats: int) -> tuple[list, list]:
        """Seconds per ``train_on_batch`` (the compiled Keras train step) on synthetic data."""
        import numpy as np

        if net not in self.nets:
            self.nets[net] = shape_net(net == "bnn")
        model = self.nets[net]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 64, 64, 6), dtype=np.float32)
        y = (0.1 * rng.standard_normal((batch, 3))).astype(np.float32)
        for _ in range(warmup):
            model.train_on_batch(x, y)
        times, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        return times, cpu

    def generate(self, n: int, warmup: int, repeats: int) -> tuple[list, list]:
        """Seconds to sample ``n`` latents from the MAF and decode them (batches of 100)."""
        tf = self.tf
        if self.gen is None:
            dist, dec = flow(), decoder()

            @tf.function(reduce_retracing=True)
            def sample(k):
                z = dist.sample(k)
                return dec(z, training=False)

            self.gen = sample
        chunks = [min(100, n - i) for i in range(0, n, 100)]
        for _ in range(warmup):
            for k in sorted(set(chunks)):
                self.gen(tf.constant(k)).numpy()
        times, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for k in chunks:
                self.gen(tf.constant(k)).numpy()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        return times, cpu


def check_counts() -> dict[str, int]:
    """Build both networks and compare their Keras parameter counts with the paper's."""
    counts = {net: int(shape_net(net == "bnn").count_params()) for net in ("cnn", "bnn")}
    for net, n in counts.items():
        status = "ok" if n == PAPER_COUNTS[net] else f"MISMATCH (paper {PAPER_COUNTS[net]:,})"
        print(f"{net}: {n:,} parameters {status}")
    return counts


def serve(threads: int, inter_op: int | None = None) -> None:
    """Answer JSON requests, one per line: ``{"op": "train"|"generate", ...}`` ->
    ``{"times": [...], "cpu": [...]}`` (wall and process CPU seconds per timed call)."""
    peer = Peer(threads, inter_op)
    import tensorflow as tf

    print(json.dumps({"ready": True, "tf": tf.__version__}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        if req["op"] == "train":
            times, cpu = peer.train(req["net"], req["batch"], req["warmup"], req["repeats"])
        elif req["op"] == "generate":
            times, cpu = peer.generate(req["n"], req["warmup"], req["repeats"])
        else:
            print(json.dumps({"error": f"unknown op {req['op']!r}"}), flush=True)
            continue
        print(json.dumps({"times": times, "cpu": cpu}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="check parameter counts and exit")
    ap.add_argument("--serve", action="store_true", help="answer timing requests on stdin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inter-op", type=int, default=None,
                    help="TensorFlow inter-op threads (default: --threads)")
    args = ap.parse_args()
    if args.check:
        setup(args.threads)
        counts = check_counts()
        sys.exit(0 if all(counts[k] == PAPER_COUNTS[k] for k in counts) else 1)
    if args.serve:
        serve(args.threads, args.inter_op)


if __name__ == "__main__":
    main()
