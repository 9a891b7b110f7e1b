"""3. A fixed-noise VAE on a circle collapses when sigma2 >= r^2 / d (berger2020 Theorem 1).

Data on the circle of radius r = 1 in d = 2, decoded by a VAE whose observation variance is
fixed at sigma2. Among decoders whose outputs are spread over a concentric circle of radius
rho, the expected log-likelihood F(rho) is closed form (``analytic.hypersphere.objective``,
docs/math.md 4.6) and its maximiser rho* is 0 exactly when r^2 <= d sigma2: the model is then
N(0, sigma2 I) and describes the disc, not the circle. For each sigma2 a VAE is trained and
the mean radius of its decoded means (z ~ p(z)) is compared with rho*; its exact log p(x)
(quadrature) can never beat F(rho*). The data are N evenly spaced angles, not a random sample,
whose density ripples a flexible decoder could fit (docs/math.md 6 item 30).

Theorem 1 assumes the exact posterior; a VAE maximises the ELBO with a Gaussian q. Just below
the threshold it settles well below rho*, and training four times longer does not change that
(measured): near the threshold the posterior wraps around the circle, q cannot follow it, and
the ELBO trades radius for a posterior q can match (docs/math.md 4.3; docs/tutorial.md, 3).
"""
import numpy as np

import analytic.hypersphere as sphere
import refvae
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
sigma2s = (0.1, 0.4, 1.0) if args.quick else (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)
stages = [(1e-2, 300), (3e-3, 200), (1e-3, 100)] if args.quick else [(1e-2, 1200), (3e-3, 900), (1e-3, 400)]
r, d, n = 1.0, 2, 128
angle = 2 * np.pi * (np.arange(n) + 0.5) / n
x = r * np.stack([np.cos(angle), np.sin(angle)], axis=1)
rng = np.random.default_rng(args.seed)
print(f"threshold r^2 / d = {sphere.critical_variance(r, d):.3f}")
print("sigma2   rho*   learned radius   F(rho*)   learned log p(x)   learned ELBO")
radii = []
for sigma2 in sigma2s:
    model = refvae.GaussianVAE.from_sizes(d, 1, hidden=(32, 32), obs="fixed", sigma2=sigma2)
    params = refvae.fit_stages(model, model.init(rng), x, stages=stages, seed=rng, average=stages[-1][1]).params
    mean, _ = model.decode(params, rng.standard_normal((5000, 1)))
    radii.append(np.linalg.norm(mean, axis=1).mean())
    rho = sphere.optimal_radius(r, sigma2, d)
    log_px = refvae.metrics.likelihood.exact_log_likelihood(model, params, x).mean()
    neg_elbo, _ = refvae.metrics.objective_estimate(model, params, x, seed=rng, n_samples=16, replicates=32)
    print(f"{sigma2:6.3f}  {rho:5.3f}  {radii[-1]:14.3f}  {sphere.objective(rho, r, sigma2, d):8.4f}"
          f"  {log_px:16.4f}  {-neg_elbo:12.4f}")

plt = pyplot()
if plt is not None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    grid = np.linspace(0.01, 1.1, 200)
    a.plot(grid, [sphere.optimal_radius(r, s, d) for s in grid], "k-", label="rho* (Theorem 1)")
    a.plot(sigma2s, radii, "o", color="C1", label="VAE: mean decoded radius")
    a.axvline(sphere.critical_variance(r, d), ls=":", color="gray", label="r^2 / d")
    a.set(xlabel="sigma2", ylabel="radius")
    a.legend(fontsize=7)
    rho = np.linspace(0, 1.2, 200)
    for i, (sigma2, found) in enumerate((s, f) for s, f in zip(sigma2s, radii) if s >= 0.2):   # near the threshold
        F = sphere.objective(rho, r, sigma2, d) - sphere.objective(0.0, r, sigma2, d)
        b.plot(rho, F, color=f"C{i}", label=f"sigma2 = {sigma2:g}")
        b.plot(found, sphere.objective(found, r, sigma2, d) - sphere.objective(0.0, r, sigma2, d), "o", color=f"C{i}")
    b.set(ylim=(-0.4, 1.0), xlabel="rho", ylabel="F(rho) - F(0)", title="F and the VAE's radius (dots)")
    b.legend(fontsize=6)
    save(fig, args.out)
