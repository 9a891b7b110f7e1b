"""Claims of seed 000: Yacoby, Pan, Doshi-Velez, "Failure Modes of VAEs and Their Effects on Downstream Tasks"."""
from __future__ import annotations

import numpy as np

import analytic.noise
import analytic.ppca

from ...backend import normal, to_host
from ...objectives import GaussianVAE
from ...optim import Adam
from ...train import fit
from ..registry import Outcome, claim


def residual_sq(model, params, x, rng, n_samples):
    """Squared residuals (x - f(z))^2 with z ~ q(z|x) from the model's own encoder: (S, N, d)."""
    mu, lv = model.encode(params, x)
    z = mu + np.exp(lv / 2) * normal(rng, (n_samples,) + mu.shape)
    return to_host((x - model.decode(params, z)[0]) ** 2)


@claim("noise_theorem2", paper="000", kind="theorem",
       statement="For fixed theta, phi the ELBO-optimal observation variance is the mean squared residual "
                 "under the encoder (Theorem 2), so a jointly trained learned variance equals it at convergence.",
       paper_figure="Theorem 2 (a closed form; no number)")
def noise_theorem2(ctx):
    rng = ctx.rng("noise_theorem2")
    d, k, n = 5, 2, ctx.scale(200, 500, 2000)
    spectrum = np.array([4.0, 2.0, 0.1, 0.1, 0.1])
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (rng.standard_normal((n, d)) * np.sqrt(spectrum)) @ rotation.T
    model = GaussianVAE.linear(d, k, obs="vector", sigma2=1.0)
    steps = ctx.scale(1500, 3000, 10000)
    res = fit(model, model.init(rng), x, steps=steps, seed=rng, optimizer=Adam(1e-2), n_samples=8,
              callback=lambda t, p, terms: ctx.progress(0.8 * t / steps, "joint training"))
    # a second phase at a 10x smaller step with more samples settles the stochastic iterate
    tail = []
    res = fit(model, res.params, x, steps=steps // 3, seed=rng, optimizer=Adam(1e-3), n_samples=64,
              callback=lambda t, p, terms: tail.append(np.exp(to_host(p["dec.obs_logvar"]))))
    learned = np.exp(to_host(res.params["dec.obs_logvar"]))
    target = analytic.noise.optimal_variance(residual_sq(model, res.params, x, rng, 1000), per_dim=True)
    jitter = np.std(tail[-len(tail) // 3:], axis=0)
    _, _, ppca_noise = analytic.ppca.fit(x, k)
    gap = np.abs(learned - target)
    passed = bool(np.all(gap < 4 * jitter + 1e-3 * target))
    return Outcome(
        passed=passed,
        measured={"learned_variance": learned.tolist(), "closed_form_for_learned_encoder": target.tolist(),
                  "ppca_ml_noise": float(ppca_noise)},
        spread={"learned_variance": jitter.tolist()},
        summary=f"learned variance per dimension {np.round(learned, 4).tolist()} vs closed form "
                f"{np.round(target, 4).tolist()} (max relative gap {np.max(gap / target):.2e}; "
                f"PPCA noise {float(ppca_noise):.4f})")
