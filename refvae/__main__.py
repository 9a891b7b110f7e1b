"""Command line: ``python -m refvae verify``.

Until the claim registry lands, ``verify`` is a short end-to-end demonstration: a linear VAE
with a learned noise variance trained on built-in Gaussian data, its learned variance printed
against the closed forms it must equal (seed 000 Theorem 2; the PPCA optimum).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def _demo(args):
    import analytic.noise
    import analytic.ppca
    from refvae.backend import normal, set_backend, to_host
    from refvae.objectives import GaussianVAE
    from refvae.optim import Adam
    from refvae.train import fit

    set_backend(args.backend)
    rng = np.random.default_rng(args.seed)
    d, k, n = 5, 2, 500
    spectrum = np.array([4.0, 2.0, 0.1, 0.1, 0.1])
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (rng.standard_normal((n, d)) * np.sqrt(spectrum)) @ rotation.T
    print(f"data: {n} points in R^{d}, covariance eigenvalues {spectrum.tolist()}, latent dim {k}")
    model = GaussianVAE.linear(d, k, obs="scalar", sigma2=1.0)
    params = model.init(rng)
    res = fit(model, params, x, steps=3000, seed=rng, optimizer=Adam(1e-2), n_samples=8,
              progress=True, log_every=250)
    res = fit(model, res.params, x, steps=1000, seed=rng, optimizer=Adam(1e-3), n_samples=64)
    params = res.params
    learned = float(np.exp(to_host(params["dec.obs_logvar"]))[0])
    mu, lv = model.encode(params, x)
    z = mu + np.exp(lv / 2) * normal(rng, (1000,) + mu.shape)
    residual_sq = to_host((x - model.decode(params, z)[0]) ** 2)
    theorem2 = float(analytic.noise.optimal_variance(residual_sq, per_dim=False))
    _, _, ppca_noise = analytic.ppca.fit(x, k)
    print(f"learned noise variance                     {learned:.5f}")
    print(f"closed form for the learned encoder (4.5)  {theorem2:.5f}   (seed 000 Theorem 2)")
    print(f"PPCA maximum-likelihood noise (4.4)        {float(ppca_noise):.5f}   (Tipping & Bishop)")
    ok = abs(learned / theorem2 - 1) < 0.01 and abs(learned / float(ppca_noise) - 1) < 0.05
    print("verdict:", "agrees" if ok else "DISAGREES")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="refvae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="run the verification job")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    args = parser.parse_args(argv)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
