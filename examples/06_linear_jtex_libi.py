"""6. LinearJTEx: the VAE's global optimum is not the truth, and LiBI finds the truth (yacoby2020).

LinearJTEx (docs/math.md 4.1, 5.1): x = chol(A A^T + B) z + e, e ~ N(0, 0.004 I), with B fixed
and A learned. For a linear decoder with its best mean-field encoder, -ELBO - H(p) splits into
an MLE term KL(p || p_theta) and a posterior-matching term E_p KL(q || p_theta(z|x)), both
closed form (``analytic.linear_gaussian.c2_objective``, docs/math.md 4.3). The truth's posterior
is strongly correlated, so its matching term is large: L(truth) = 0.532 against a minimum over
A of 0.196 (yacoby2020 Sec. 1, population values). A VAE trained with refvae lands on that
minimum: a worse p(x) bought with a nearly diagonal posterior. LiBI (docs/math.md 2.4) fits the
decoder first, with codes constrained to look like N(0, I), then q: it keeps the truth's p(x).

Printed: L's two terms for the truth, the closed-form optimum, the trained VAE and LiBI, on the
training sample, and each model's exact held-out log p(x) (closed form, docs/math.md 4.1). LiBI
can leave a restart with one-dimensional codes (a collapsed direction its covariance penalty
cannot revive); its held-out selection, as in yacoby2020, discards it.
"""
import numpy as np
from scipy import optimize

import analytic.linear_gaussian as lg
import refvae
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
n, k, R = (300, 2, 2) if args.quick else (500, 1, 3)     # k shortens the schedules; R restarts
A_GT, B, sigma2 = lg.LINEAR_JTEX_A, lg.LINEAR_JTEX_B, lg.LINEAR_JTEX_SIGMA2
rng = np.random.default_rng(args.seed)
data = refvae.datasets.linear_jtex(n, rng)
x, test, val = data.x, data.sample(500, rng), data.sample(200, rng)


def L(A, cov):
    return lg.c2_objective(A, B, sigma2, cov)          # (MLE term, posterior-matching term)


def minimum(cov):
    """min over A of L, by BFGS on the closed form from a few starts."""
    runs = [optimize.minimize(lambda a: sum(L(a.reshape(2, 2), cov)), rng.standard_normal(4), method="BFGS")
            for _ in range(4)]
    return min(runs, key=lambda r: r.fun).x.reshape(2, 2)


population = A_GT @ A_GT.T + sigma2 * np.eye(2)
print(f"population: L(truth) {sum(L(A_GT, population)):.4f} (paper 0.532), "
      f"min over A {sum(L(minimum(population), population)):.4f} (paper 0.196)")
M = x.T @ x / n                                        # the decoder has no offset: second moment about 0
vae = refvae.GaussianVAE(refvae.Linear(2, 4, scale=0.5), refvae.CholeskyLinear(2, B), 2, 2, obs="fixed",
                         sigma2=sigma2 - B[0])
stages = [(1e-1, 400), (3e-2, 800), (1e-2, 800), (3e-3, 1000), (1e-3, 1000)]
vae_params = refvae.fit_stages(vae, vae.init(rng, R), x, stages=[(lr, s // k) for lr, s in stages], seed=rng,
                               n_samples=2).params
libi = refvae.fit_libi(vae, x, val.x, eps_hz=10.0, eps_sigma=0.5, eps_mu=0.5, repetitions=1, seed=rng,
                       step1_steps=2000 // k, step2_steps=2000 // k, optimizer=refvae.Adam(3e-2), batch_size=100,
                       n_is_samples=200, restarts=R)
chosen = int(np.argmax(libi.best_log_likelihood))      # yacoby2020 keeps the restart best on validation data
rows = {"truth": A_GT, "optimum (closed form)": minimum(M),
        **{f"VAE, restart {r}": vae_params["dec.A"][r] for r in range(R)},
        **{f"LiBI, restart {r}": libi.params["dec.A"][r] for r in range(R)}}
print("on the sample           MLE term   matching term   L = sum   held-out log p(x)")
for name, A in rows.items():
    W = vae.decoder.factor({"A": A})                   # chol(A A^T + B): the decoder x = W z + e
    mle, pm = L(A, M)
    print(f"{name:22s}  {mle:8.4f}  {pm:14.4f}  {mle + pm:8.4f}  "
          f"{lg.log_likelihood(test.x, W, np.zeros(2), sigma2 - B[0]).mean():18.4f}")
print(f"LiBI keeps restart {chosen} (validation log p(x) per restart: {np.round(libi.best_log_likelihood, 3)})")

plt = pyplot()
if plt is not None:
    shown = ["truth", "optimum (closed form)", "VAE, restart 0", f"LiBI, restart {chosen}"]
    fig, axes = plt.subplots(1, 4, figsize=(9, 3), sharex=True, sharey=True)
    t = np.linspace(0, 2 * np.pi, 100)
    for ax, name in zip(axes, shown):
        cov = lg.posterior(vae.decoder.factor({"A": rows[name]}), np.zeros(2), sigma2 - B[0], np.zeros(2)).cov
        best = np.diag(1 / np.diag(np.linalg.inv(cov)))         # the best mean-field q (docs/math.md 4.2)
        for c, style, label in ((cov, "k-", "exact p(z | x)"), (best, "C1--", "best mean-field q")):
            ax.plot(*(np.linalg.cholesky(c) @ np.stack([np.cos(t), np.sin(t)])), style, label=label)
        ax.set_title(f"{name}\nmatching term {L(rows[name], M)[1]:.3f}", fontsize=8)
        ax.set(aspect="equal", xlabel="z1")
    axes[0].legend(fontsize=6, loc="lower left")
    save(fig, args.out)
