"""Same seed, same numbers: digests of every output of a set of short, representative runs.

Speed work must change no result bitwise on NumPy float64. This script runs short trainings
and objective evaluations covering every observation-noise mode, restarts, Monte Carlo samples,
IWAE, the autoencoder, M2, LiBI's step 1, per-point encoders, Adam (with ``only`` and group
learning rates) and SGD with momentum, and records the sha256 of the bytes (with dtype and shape)
of every array they return.

    python benchmarks/golden.py --write   # record the digests (before a change)
    python benchmarks/golden.py           # compare against the record; exit status 1 on any change

The record lives outside the repository (default /tmp/perf/golden.json, ``--path`` to change).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

from refvae import layers as L
from refvae.encoders import PerPointVAE
from refvae.iwae import IWAE
from refvae.libi import LiBIStep1, init_libi
from refvae.m2 import M2
from refvae.objectives import Autoencoder, GaussianVAE
from refvae.optim import SGD, Adam
from refvae.train import fit


def digest(a):
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def flatten(prefix, obj, out):
    """Every array (or number) in a nested result, keyed by its path."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            flatten(f"{prefix}/{k}", obj[k], out)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            flatten(f"{prefix}/{i}", v, out)
    elif hasattr(obj, "params") and hasattr(obj, "history"):
        flatten(prefix + "/params", obj.params, out)
        flatten(prefix + "/history", obj.history, out)
        flatten(prefix + "/state", obj.state, out)
    else:
        out[prefix] = digest(obj)


def data(seed, n, d):
    return np.random.default_rng(seed).standard_normal((n, d))


def cases():
    """name -> zero-argument callable returning the outputs to digest."""
    out = {}
    x = data(1, 40, 3)
    for obs in ("fixed", "scalar", "vector", "decoder"):
        for restarts in (None, 3):
            for S in (None, 4):
                for kl in ("analytic", "sample"):
                    def run(obs=obs, restarts=restarts, S=S, kl=kl):
                        m = GaussianVAE.from_sizes(3, 2, (6, 5), "tanh", obs=obs, sigma2=0.5, beta=0.7, kl=kl)
                        p = m.init(7, restarts)
                        noise = np.random.default_rng(3).standard_normal(m.noise_shape(p, 40, S))
                        kw = {"sigma2": 0.3} if obs == "fixed" else {}
                        return m.value_and_grad(p, x, noise, with_terms=True, beta=0.9, **kw)
                    out[f"vae/{obs}/R{restarts}/S{S}/{kl}"] = run
    for act in ("relu", "leaky_relu", "sigmoid", "softplus", "cube", "identity"):
        def run(act=act):
            m = GaussianVAE.from_sizes(3, 2, (6,), act, obs="scalar")
            p = m.init(8, 2)
            noise = np.random.default_rng(4).standard_normal(m.noise_shape(p, 40))
            return m.value_and_grad(p, x, noise)
        out[f"vae/act/{act}"] = run

    def residual():
        m = GaussianVAE.from_sizes(3, 2, (6, 6, 6), "tanh", obs="vector", residual=True)
        p = m.init(9)
        noise = np.random.default_rng(5).standard_normal(m.noise_shape(p, 40, 2))
        return m.value_and_grad(p, x, noise, with_terms=True)
    out["vae/residual"] = residual

    def cholesky_shift():
        dec = L.Sequential(L.CholeskyLinear(3, np.array([0.1, 0.2, 0.0])), L.Tanh(), L.Shift(3))
        m = GaussianVAE(L.mlp((3, 4, 6)), dec, 3, 3, obs="scalar")
        p = m.init(10, 2)
        noise = np.random.default_rng(6).standard_normal(m.noise_shape(p, 40))
        return m.value_and_grad(p, x, noise, with_terms=True)
    out["vae/cholesky_shift"] = cholesky_shift

    def x_with_restarts():
        m = GaussianVAE.from_sizes(3, 2, (5,), obs="scalar")
        p = m.init(11, 2)
        xr = np.stack([x, 2 * x])
        noise = np.random.default_rng(7).standard_normal(m.noise_shape(p, 40, 3))
        return m.value_and_grad(p, xr, noise, with_terms=True)
    out["vae/x_restarts"] = x_with_restarts

    for obs in ("fixed", "scalar", "decoder"):
        for restarts in (None, 2):
            def run(obs=obs, restarts=restarts):
                iw = IWAE(GaussianVAE.from_sizes(3, 2, (6,), obs=obs), n_samples=5)
                p = iw.init(12, restarts)
                noise = np.random.default_rng(8).standard_normal(iw.noise_shape(p, 40))
                return iw.value_and_grad(p, x, noise, with_terms=True), iw.bound(p, x, noise)
            out[f"iwae/{obs}/R{restarts}"] = run

    for restarts in (None, 2):
        def run(restarts=restarts):
            ae = Autoencoder.from_sizes(3, 2, (6,), "relu")
            p = ae.init(13, restarts)
            return ae.value_and_grad(p, x, None, with_terms=True)
        out[f"ae/R{restarts}"] = run

    def m2():
        model = M2.from_sizes(3, 2, 2, (5,), obs="scalar")
        p = model.init(14, 2)
        labels = np.where(np.arange(40) % 3 == 0, -1, np.arange(40) % 2)
        noise = np.random.default_rng(9).standard_normal(model.noise_shape(p, 40))
        return model.value_and_grad(p, x, labels, noise, with_terms=True)
    out["m2"] = m2

    def libi():
        vae = GaussianVAE.from_sizes(3, 2, (5,), obs="scalar")
        step1 = LiBIStep1(vae, eps_hz=0.1, eps_sigma=0.1, eps_mu=0.1)
        p = init_libi(vae, 15, 2)
        return step1.value_and_grad(p, x, with_terms=True)
    out["libi/step1"] = libi

    def perpoint():
        ppv = PerPointVAE.from_decoder(L.mlp((2, 5, 3)), 40, 2, 3, obs="scalar")
        p = ppv.init(16)
        from refvae.encoders import with_index
        return fit(ppv, p, with_index(x), steps=20, seed=17, batch_size=10, optimizer=Adam(1e-2))
    out["perpoint/fit"] = perpoint

    # trainings: Adam and SGD, restarts, samples, minibatches, only= and group learning rates
    def fit_adam():
        m = GaussianVAE.from_sizes(3, 2, (8, 8), obs="scalar")
        return fit(m, m.init(18), x, steps=50, seed=19, batch_size=10, optimizer=Adam(1e-2))
    out["fit/adam"] = fit_adam

    def fit_adam_restarts_samples():
        m = GaussianVAE.from_sizes(3, 2, (8,), obs="vector")
        return fit(m, m.init(20, 3), x, steps=50, seed=21, batch_size=20, n_samples=3,
                   optimizer=Adam(1e-2, group_lr={"enc.": 3e-3}))
    out["fit/adam_restarts_samples"] = fit_adam_restarts_samples

    def fit_sgd():
        m = GaussianVAE.from_sizes(3, 2, (8,), obs="decoder")
        return fit(m, m.init(22, 2), x, steps=50, seed=23, optimizer=SGD(1e-2, momentum=0.9))
    out["fit/sgd"] = fit_sgd

    def fit_only():
        m = GaussianVAE.from_sizes(3, 2, (8,), obs="fixed")
        r1 = fit(m, m.init(24), x, steps=20, seed=25, batch_size=10, optimizer=Adam(1e-2), only=("enc.",))
        opt = Adam(1e-2)
        p, state = r1.params, r1.state
        rng = np.random.default_rng(26)
        losses = []
        for t in range(10):
            noise = rng.standard_normal(m.noise_shape(p, 40))
            loss, g = m.value_and_grad(p, x, noise)
            p, state = opt.update(p, g, state, only="dec." if t % 2 else None)
            losses.append(loss)
        return r1, p, state, losses
    out["fit/only_then_update"] = fit_only

    def fit_ae():
        ae = Autoencoder.from_sizes(3, 2, (6,))
        return fit(ae, ae.init(27, 2), x, steps=50, seed=28, batch_size=10, optimizer=Adam(1e-2))
    out["fit/ae"] = fit_ae

    def fit_iwae():
        iw = IWAE(GaussianVAE.from_sizes(3, 2, (6,), obs="scalar"), n_samples=3)
        return fit(iw, iw.init(29), x, steps=30, seed=30, batch_size=20, optimizer=Adam(1e-2))
    out["fit/iwae"] = fit_iwae
    return out


def run_all():
    result = {}
    with np.errstate(all="raise"):
        for name, fn in cases().items():
            flatten(name, fn(), result)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the digests instead of comparing")
    ap.add_argument("--path", default="/tmp/perf/golden.json")
    args = ap.parse_args(argv)
    got = run_all()
    if args.write:
        os.makedirs(os.path.dirname(args.path) or ".", exist_ok=True)
        with open(args.path, "w") as f:
            json.dump(got, f, indent=0, sort_keys=True)
        print(f"recorded {len(got)} digests in {args.path}")
        return 0
    with open(args.path) as f:
        want = json.load(f)
    changed = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    for k in changed[:40]:
        print(f"CHANGED {k}: {want.get(k)} -> {got.get(k)}")
    print(f"{len(got)} digests, {len(changed)} changed against {args.path}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
