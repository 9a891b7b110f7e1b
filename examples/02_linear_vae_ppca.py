"""2. The linear VAE is PPCA, and a fixed noise prunes latents (dai2020; docs/math.md 4.4).

Data: Gaussian, x ~ N(0, U diag(l) U^T) in d = 5 with spectrum l = (8, 2, 0.5, 0.125, 0.03)
(``refvae.datasets.gaussian_spectrum``; eigenvalues a factor 4 apart, docs/math.md 6 item 27).
A linear VAE (affine encoder and decoder, ``GaussianVAE.linear``) is trained with refvae and
compared with the closed forms of ``analytic.ppca`` on the sample's eigenvalues l_j:

1. learned noise, K = 2: sigma2 = mean of the discarded eigenvalues, decoder columns of norm
   sqrt(l_j - sigma2), and the best ELBO equals PPCA's maximum log-likelihood;
2. noise fixed at gamma (dai2020's gamma), K = 5: column j has norm sqrt(max(l_j - gamma, 0)),
   so every direction with l_j <= gamma is pruned: its column is zero, its posterior the prior.

refvae's decoder weight ``dec.0.W`` is (K, d): its rows are analytic's columns (docs/math.md 0).
``--quick`` leaves out gamma = 0.06, which needs the default run's longer training.
"""
import numpy as np

import analytic.ppca
import refvae
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
n, gammas, stages = (300, (4.0, 1.0, 0.25), [(1e-1, 200), (3e-2, 300), (1e-2, 200), (1e-3, 300)]) if args.quick \
    else (1000, (4.0, 1.0, 0.25, 0.06), [(1e-1, 1000), (3e-2, 1000), (1e-2, 1000), (1e-3, 500)])
rng = np.random.default_rng(args.seed)
x = refvae.datasets.gaussian_spectrum(n, rng, eigs=(8, 2, 0.5, 0.125, 0.03)).x


def show(a):
    return " ".join(f"{v:.3f}" for v in a)


def train(model):
    """Adam under a falling learning rate, then the learned column norms and the ELBO."""
    params = refvae.fit_stages(model, model.init(rng), x, stages=stages, seed=rng).params
    norms = np.sort(np.linalg.norm(params["dec.0.W"], axis=1))[::-1]
    neg_elbo, se = refvae.metrics.objective_estimate(model, params, x, seed=rng, n_samples=16, replicates=32)
    return params, norms, f"{-neg_elbo:.4f} +- {se:.4f}"


_, eigs, _ = analytic.ppca.eigen(x)
print("sample eigenvalues l_j:", show(eigs))
# 1. learned noise (LS-VAE), K = 2
params, norms, elbo = train(refvae.GaussianVAE.linear(5, 2, obs="scalar", sigma2=1.0))
best = analytic.ppca.fit(x, 2)
print("learned noise, K = 2")
print(f"  noise sigma2:  learned {np.exp(params['dec.obs_logvar'][0]):.4f}   PPCA {best.sigma2:.4f}")
print(f"  column norms:  learned {show(norms)}   PPCA {show(np.linalg.norm(best.W, axis=0))}")
print(f"  ELBO:          learned {elbo}   PPCA log p(x) {analytic.ppca.log_likelihood(x, *best):.4f}")

# 2. fixed noise gamma between consecutive eigenvalues, K = 5
found = []
print("fixed noise gamma, K = 5 (a column counts as kept when its norm is above 0.1)")
for gamma in gammas:
    params, norms, elbo = train(refvae.GaussianVAE.linear(5, 5, obs="fixed", sigma2=gamma))
    best = analytic.ppca.fit(x, 5, sigma2=gamma)
    found.append((norms, np.linalg.norm(best.W, axis=0)))
    print(f"  gamma {gamma:g}: kept {np.sum(norms > 0.1)} of 5, analytic {analytic.ppca.active_dims(eigs, gamma)}")
    print(f"    column norms:  learned {show(norms)}   PPCA {show(found[-1][1])}")
    print(f"    ELBO:          learned {elbo}   PPCA log p(x) {analytic.ppca.log_likelihood(x, *best):.4f}")

plt = pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for (learned, exact), gamma, c in zip(found, gammas, ["C0", "C1", "C2", "C3"]):
        ax.plot(range(1, 6), exact, "-", color=c, label=f"analytic, gamma = {gamma:g}")
        ax.plot(range(1, 6), learned, "o", color=c, mfc="none")
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("latent direction j (eigenvalue l_j)")
    ax.set_ylabel("decoder column norm")
    ax.set_title("linear VAE (circles) vs sqrt(max(l_j - gamma, 0))", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, args.out)
