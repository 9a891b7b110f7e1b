"""4. The ELBO trades log p(x) for simple posteriors; IWAE trades less (yacoby2021 Theorem 1).

Figure-8 data (``refvae.datasets.figure8``, docs/math.md 5.2): a curve that crosses itself,
so near the crossing the exact posterior p(z|x) has several modes, which a Gaussian q cannot
follow. -ELBO = -log p(x) + KL(q || p(z|x)) (docs/math.md 4.3): the VAE may give up some
log p(x) for posteriors q can match. IWAE's bound L_S (docs/math.md 2.1) is tighter, so it
should give up less. Both start from one VAE trained with the ELBO and take the same steps,
one on the ELBO, the other on L_S: they differ only in the bound.

Everything is exact where it can be: log p(x) and p(z|x) of each learned decoder by
quadrature (docs/math.md 3.1), KL(q || p(z|x)) by quadrature too; the Monte Carlo ELBO
is checked against log p(x) - KL. Figure: data and decoder curves; for the held-out point
closest to the crossing, each model's exact posterior against its q.
"""
import numpy as np

import refvae
from refvae.metrics import quadrature
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
quick = args.quick
n, restarts, S = (128, 2, 10) if quick else (256, 3, 20)
warm, tail = ([(1e-2, 300)], [(1e-3, 50)]) if quick else ([(1e-2, 2000), (3e-3, 1000)], [(1e-3, 1000)])
rng = np.random.default_rng(args.seed)
data = refvae.datasets.figure8(n, rng)
test = data.sample(100 if quick else 300, rng)
vae = refvae.GaussianVAE.from_sizes(2, 1, hidden=(32, 32), obs="fixed", sigma2=0.01)
start = refvae.fit_stages(vae, vae.init(rng, restarts), data.x, stages=warm, seed=rng, batch_size=64).params
trained = {"VAE": refvae.fit_stages(vae, start, data.x, stages=tail, seed=rng, batch_size=64).params,
           f"IWAE S={S}": refvae.fit_stages(refvae.IWAE(vae, S), start, data.x, stages=tail, seed=rng,
                                            batch_size=64).params}

true_lp = quadrature.log_likelihood(test.x, **test.truth.quadrature_args)
modes = quadrature.posterior_modes(test.x, **test.truth.quadrature_args)
print(f"held-out truth: log p(x) {true_lp.mean():.4f}, multimodal posteriors {np.mean(modes > 1):.1%}")
print("restart  model        log p(x)  multimodal  KL(q || p(z|x))   ELBO (Monte Carlo)   log p(x) - KL")
curves = {}
for r in range(restarts):
    for name, params in trained.items():
        one = refvae.take_restart(params, r)                       # restart r's parameters

        def decode(z, one=one):
            return vae.decode(one, z)[0]
        lp = quadrature.log_likelihood(test.x, decode, 1, sigma2=0.01)
        modes = quadrature.posterior_modes(test.x, decode, 1, sigma2=0.01)
        mu, logvar = vae.encode(one, test.x)
        kl = quadrature.kl_to_posterior(test.x, mu, logvar, decode, 1, sigma2=0.01)
        neg_elbo, se = refvae.metrics.objective_estimate(vae, one, test.x, seed=rng, n_samples=16, replicates=32)
        print(f"{r:7d}  {name:10s}  {lp.mean():9.4f}  {np.mean(modes > 1):10.1%}  {kl.mean():15.4f}"
              f"  {-neg_elbo:11.4f} +- {se:.4f}  {(lp - kl).mean():14.4f}")
        curves.setdefault(name, (decode, mu, logvar))           # restart 0 for the figure

plt = pyplot()
if plt is not None:
    i = np.argmin(np.linalg.norm(test.x, axis=1))               # the point nearest the crossing
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    z = np.linspace(-3, 3, 400)[:, None]
    axes[0].scatter(*data.x.T, s=3, color="gray", label="data")
    axes[0].plot(*test.x[i], "k*", ms=12, label="x for the posteriors")
    for ax, (name, (decode, mu, logvar)) in zip(axes[1:], curves.items()):
        axes[0].plot(*decode(z).T, lw=1.5, label=f"{name} decoder f(z)")
        post = quadrature.posterior_grid(test.x[i:i + 1], decode, 1, sigma2=0.01)
        zz, dens = post.z[:, 0], post.density[0]
        seen = zz[dens > 1e-3 * dens.max()]                      # zoom on the posterior's mass
        keep = (zz > seen.min() - 0.1) & (zz < seen.max() + 0.1)
        log_q = refvae.gaussian_log_prob(zz[keep], mu[i, 0], logvar[i, 0])[0]    # q(z|x) = N(mu, exp(logvar))
        ax.plot(zz[keep], dens[keep], "k-", label="exact p(z | x)")
        ax.plot(zz[keep], np.exp(log_q), "C1--", label="q(z | x)")
        ax.set(title=name, xlabel="z")
        ax.legend(fontsize=7)
    axes[0].legend(fontsize=6)
    save(fig, args.out)
