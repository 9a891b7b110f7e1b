"""A lean hand-written NumPy training step: the yardstick for refvae's own overhead.

The same maths as one Adam step of ``GaussianVAE.from_sizes(d, K, hidden, "tanh", obs="scalar")``
with one noise sample per point and the closed-form KL, written the way one would write it for
speed alone: every parameter a view into one flat vector, gradients written into one flat
buffer, no validation, and Adam as a few in-place ufuncs over the whole vector. It knows one
architecture only; ``step_bench`` checks its loss and gradients equal refvae's (to 1e-12) before
timing it, so the gap between the two is refvae's overhead and nothing else.
"""
from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


class LeanVAE:
    """Tanh MLP encoder (d -> hidden -> 2K) and decoder (K -> hidden[::-1] -> d), learned scalar noise.

    Parameters live in ``self.flat`` (refvae's keys map to views via ``self.views``).
    """

    def __init__(self, params, data_dim, latent_dim, hidden, dtype=np.float64):
        self.d, self.K, self.dtype = data_dim, latent_dim, dtype
        enc_sizes = (data_dim, *hidden, 2 * latent_dim)
        dec_sizes = (latent_dim, *hidden[::-1], data_dim)
        self.keys, self.shapes = [], []
        for net, sizes in (("enc", enc_sizes), ("dec", dec_sizes)):
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                self.keys += [f"{net}.{2 * i}.W", f"{net}.{2 * i}.b"]
                self.shapes += [(a, b), (b,)]
        self.keys.append("dec.obs_logvar")
        self.shapes.append((1,))
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.flat = np.empty(self.offsets[-1], dtype)
        self.gflat = np.zeros_like(self.flat)
        self.views = self._views(self.flat)
        self.gviews = self._views(self.gflat)
        for k in self.keys:
            self.views[k][...] = params[k]
        n_enc = len(enc_sizes) - 1
        self.enc = [(self.views[f"enc.{2 * i}.W"], self.views[f"enc.{2 * i}.b"],
                     self.gviews[f"enc.{2 * i}.W"], self.gviews[f"enc.{2 * i}.b"]) for i in range(n_enc)]
        n_dec = len(dec_sizes) - 1
        self.dec = [(self.views[f"dec.{2 * i}.W"], self.views[f"dec.{2 * i}.b"],
                     self.gviews[f"dec.{2 * i}.W"], self.gviews[f"dec.{2 * i}.b"]) for i in range(n_dec)]
        self.olv, self.golv = self.views["dec.obs_logvar"], self.gviews["dec.obs_logvar"]
        # Adam state and scratch
        self.m, self.v = np.zeros_like(self.flat), np.zeros_like(self.flat)
        self.t1, self.t2 = np.empty_like(self.flat), np.empty_like(self.flat)
        self.t = 0

    def _views(self, buf):
        return {k: buf[a:b].reshape(s) for k, s, a, b in zip(self.keys, self.shapes, self.offsets[:-1],
                                                               self.offsets[1:])}

    def grads_dict(self):
        return {k: v.copy() for k, v in self.gviews.items()}

    def loss_and_grad(self, x, eps):
        """Mean -ELBO over the batch; gradients land in ``self.gflat``."""
        B, K = x.shape[0], self.K
        out, hs = _mlp(self.enc, x)
        mu, lv = out[:, :K], out[:, K:]
        std = np.exp(0.5 * lv)
        z = mu + std * eps
        mean, gs = _mlp(self.dec, z)
        r = x - mean
        olv = self.olv[0]
        prec = math.exp(-olv)
        rr = (r * r).sum()
        var = np.exp(lv)
        loss = (0.5 * (rr * prec + B * self.d * (olv + LOG_2PI))
                + 0.5 * ((mu * mu).sum() + var.sum() - lv.sum() - B * K)) / B
        # backward: decoder
        self.golv[0] = 0.5 * (B * self.d - rr * prec) / B
        dy = r * (-prec / B)
        for i in range(len(self.dec) - 1, -1, -1):
            W, _, gW, gb = self.dec[i]
            np.matmul(gs[i].T, dy, out=gW)
            dy.sum(axis=0, out=gb)
            dy = dy @ W.T
            if i:
                dy *= 1.0 - gs[i] * gs[i]
        # reparameterisation and KL
        dout = np.empty_like(out)
        np.multiply(mu, 1.0 / B, out=dout[:, :K])
        dout[:, :K] += dy
        dlv = dout[:, K:]
        np.multiply(dy, std, out=dlv)
        dlv *= eps
        var -= 1.0
        var *= 1.0 / B
        dlv += var
        dlv *= 0.5
        # encoder
        dy = dout
        for i in range(len(self.enc) - 1, -1, -1):
            W, _, gW, gb = self.enc[i]
            np.matmul(hs[i].T, dy, out=gW)
            dy.sum(axis=0, out=gb)
            if i:
                dy = dy @ W.T
                dy *= 1.0 - hs[i] * hs[i]
        return loss

    def adam(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        g, m, v, t1, t2 = self.gflat, self.m, self.v, self.t1, self.t2
        m *= b1
        np.multiply(g, 1.0 - b1, out=t1)
        m += t1
        v *= b2
        np.multiply(g, g, out=t1)
        t1 *= 1.0 - b2
        v += t1
        np.multiply(v, 1.0 / (1.0 - b2 ** self.t), out=t2)
        np.sqrt(t2, out=t2)
        t2 += eps
        np.multiply(m, lr / (1.0 - b1 ** self.t), out=t1)
        t1 /= t2
        self.flat -= t1

    def step(self, x, eps, lr=1e-3):
        loss = self.loss_and_grad(x, eps)
        self.adam(lr)
        return loss


def _mlp(layers, x):
    """Tanh MLP forward: the output and the input of every layer (for the backward pass)."""
    inputs = [x]
    for W, b, _, _ in layers[:-1]:
        x = np.tanh(x @ W + b)
        inputs.append(x)
    W, b, _, _ = layers[-1]
    return x @ W + b, inputs
