"""1. A Gaussian VAE from scratch, with the training loop written out (docs/math.md 1).

Data: ``refvae.datasets.circle``, points on the unit circle plus noise of variance 0.01, whose
true latent is one-dimensional (docs/math.md 5.2). Model: a ``GaussianVAE`` with tanh MLPs,
K = 1, the observation variance fixed at the truth's 0.01. The loop below is what
``refvae.fit`` does: draw a minibatch and standard-normal noise, call ``value_and_grad`` (the
negative ELBO per point and its gradient, a pure function of params, x and noise), take an
Adam step.

Printed, on held-out points: the ELBO, the learned model's exact log p(x) by quadrature
(docs/math.md 3.1) and the truth's. The ELBO is a lower bound on the model's log p(x): the gap
is E KL(q(z|x) || p(z|x)) (docs/math.md 4.3). Figure: the data against samples from the model.
"""
import numpy as np

import refvae
from _common import parse, pyplot, save

args = parse(__doc__, __file__)
n, steps, batch = (200, 400, 50) if args.quick else (1000, 6000, 100)
rng = np.random.default_rng(args.seed)
data = refvae.datasets.circle(n, rng)
test = data.sample(500, rng)

model = refvae.GaussianVAE.from_sizes(2, 1, hidden=(32, 32), activation="tanh", obs="fixed", sigma2=0.01)
params = model.init(rng)
optimizer = refvae.Adam(lr=1e-2)
state = optimizer.init(params)
for step in range(steps):
    if step == steps // 2:                            # a smaller step for the second half
        optimizer = refvae.Adam(lr=2e-3)
        state = optimizer.init(params)
    x = data.x[rng.choice(n, size=batch, replace=False)]
    noise = rng.standard_normal(model.noise_shape(params, batch))    # eps ~ N(0, I), z = mu + std * eps
    loss, grads = model.value_and_grad(params, x, noise)             # -ELBO per point, d(-ELBO)/d params
    params, state = optimizer.update(params, grads, state)
    if step % (steps // 4) == 0 or step == steps - 1:
        print(f"step {step:5d}  -ELBO on the minibatch {loss:8.4f}")

neg_elbo, se = refvae.metrics.objective_estimate(model, params, test.x, seed=rng, n_samples=16, replicates=32)
model_lp = refvae.metrics.likelihood.exact_log_likelihood(model, params, test.x)
true_lp = refvae.metrics.quadrature.log_likelihood(test.x, **test.truth.quadrature_args)
print(f"held-out ELBO:           {-neg_elbo:.4f} +- {se:.4f}")
print(f"held-out model log p(x): {model_lp.mean():.4f}  (quadrature)")
print(f"held-out true log p(x):  {true_lp.mean():.4f}  (quadrature)")
print(f"gap log p(x) - ELBO:     {model_lp.mean() + neg_elbo:.4f}  (= mean KL(q || p(z|x)) >= 0)")

plt = pyplot()
if plt is not None:
    z = rng.standard_normal((n, 1))
    mean, logvar = model.decode(params, z)
    samples = mean + np.exp(logvar / 2) * rng.standard_normal(mean.shape)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(*data.x.T, s=4, alpha=0.5, label="data")
    ax.scatter(*samples.T, s=4, alpha=0.5, label="samples x ~ p(x) of the VAE")
    ax.plot(*mean.T[:, np.argsort(z[:, 0])], "k-", lw=1, label="decoder mean f(z)")
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=7)
    save(fig, args.out)
