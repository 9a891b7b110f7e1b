"""5. A learned noise variance is the mean squared residual under q (yacoby2021 Theorem 2).

With the decoder mean f and the encoder q held fixed, the -ELBO depends on a constant noise
variance s2 only through E_q[(x - f(z))^2] / (2 s2) + log(s2) / 2, minimised at

    s2* = (1/N) sum_n E_q(z|x_n)[ (x_n - f(z))^2 ]      (averaged over coordinates for a scalar)

(``analytic.noise.optimal_variance``, docs/math.md 4.5). So the learned noise absorbs every
error of f and of q and equals the true noise only when both are right. On Spiral Dots (true
noise 0.01, docs/math.md 5.2), as yacoby2021 Sec. 4.2:

- refit: a VAE trained with the noise fixed at the truth, then s2 alone trained with f, q
  frozen; it must land on s2* (yacoby2021 reports 0.014 +- 0.001);
- joint: a VAE trained with a learned scalar noise (LS-VAE) starting at the truth; at a
  stationary point it equals s2* of its own f, q (yacoby2021: 0.020 +- 0.003).
"""
import numpy as np

import analytic.noise
import refvae
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
n, restarts, k = (200, 2, 5) if args.quick else (1000, 3, 1)          # k shortens the schedules
stages = [(1e-2, 3000 // k), (3e-3, 1500 // k), (1e-3, 500 // k)]
rng = np.random.default_rng(args.seed)
x = refvae.datasets.spiral_dots(n, rng).x


def closed_form(model, params, draws=64):
    """s2* per restart: squared residuals x - f(z) with z ~ q(z|x), averaged (Theorem 2)."""
    mu, logvar = model.encode(params, x)
    z, _ = refvae.reparameterize(mu, logvar, rng.standard_normal((draws,) + mu.shape))
    residual_sq = (x - model.decode(params, z)[0]) ** 2                     # (draws, R, N, d)
    return np.array([analytic.noise.optimal_variance(residual_sq[:, r], per_dim=False) for r in range(restarts)])


fixed = refvae.GaussianVAE.from_sizes(2, 1, hidden=(32, 32), obs="fixed", sigma2=0.01)
learned = refvae.GaussianVAE.from_sizes(2, 1, hidden=(32, 32), obs="scalar", sigma2=0.01)
start = learned.init(rng, restarts)                   # the fixed model uses the same networks
history = []
params_fixed = refvae.fit_stages(fixed, {key: v for key, v in start.items() if key != "dec.obs_logvar"}, x,
                                 stages=stages, seed=rng, batch_size=64).params
refit = refvae.fit_stages(learned, {**params_fixed, "dec.obs_logvar": start["dec.obs_logvar"]}, x,
                          stages=[(1e-2, 200 // k), (1e-3, 200 // k)], seed=rng, batch_size=64, n_samples=16,
                          only=("dec.obs_logvar",)).params                   # s2 alone, f and q frozen
joint = refvae.fit_stages(learned, start, x, stages=stages, seed=rng, batch_size=64,
                          callback=lambda t, p, info: history.append(np.exp(p["dec.obs_logvar"][:, 0]))).params
refit_s2, joint_s2 = np.exp(refit["dec.obs_logvar"][:, 0]), np.exp(joint["dec.obs_logvar"][:, 0])
print("true noise 0.01; yacoby2021: refit 0.014 +- 0.001, joint 0.020 +- 0.003")
print("restart   refit s2   s2* of (f, q)   |   joint s2   s2* of (f, q)")
for r, (a, b, c, d) in enumerate(zip(refit_s2, closed_form(fixed, params_fixed), joint_s2,
                                     closed_form(learned, joint))):
    print(f"{r:7d}  {a:9.5f}  {b:14.5f}   |  {c:9.5f}  {d:14.5f}")

plt = pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(np.array(history), lw=1)
    ax.axhline(0.01, color="k", ls=":", label="true noise 0.01")
    ax.axhspan(0.017, 0.023, color="gray", alpha=0.3, label="yacoby2021 joint: 0.020 +- 0.003")
    ax.set(xlabel="step", ylabel="learned noise variance", title="joint training, one line per restart")
    ax.legend(fontsize=7)
    save(fig, args.out)
