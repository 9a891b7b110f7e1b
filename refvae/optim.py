"""Adam and SGD over parameter dicts, with per-group learning rates.

Optimisers are pure: ``state = opt.init(params)`` and
``params, state = opt.update(params, grads, state, only=None)`` return new dicts. ``only``
restricts a step to the keys under some prefixes (``only=("enc.",)`` steps the encoder
alone, as Lagging Inference Networks do); Adam's step count is kept per key, so skipped
keys keep their own bias correction.
"""
from __future__ import annotations

from . import _checks


class _Optimizer:
    def __init__(self, lr, group_lr):
        self.lr = _checks.scalar("lr", lr, positive=True)
        group_lr = dict(group_lr or {})
        for prefix, value in group_lr.items():
            if not isinstance(prefix, str):
                raise TypeError(f"group_lr keys must be key prefixes (str), got {prefix!r}")
            _checks.scalar(f"group_lr[{prefix!r}]", value, positive=True)
        self.group_lr = group_lr

    def lr_for(self, key):
        """Learning rate of ``key``: that of its longest matching prefix in ``group_lr``, else ``lr``."""
        best = max((p for p in self.group_lr if key.startswith(p)), key=len, default=None)
        return self.lr if best is None else self.group_lr[best]

    @staticmethod
    def _selected(key, only):
        return only is None or any(key.startswith(p) for p in only)

    @staticmethod
    def _check_only(only):
        """None, a key prefix, or a non-empty sequence of key prefixes -> None or a tuple of str."""
        if only is None:
            return None
        only = (only,) if isinstance(only, str) else tuple(only) if isinstance(only, (list, tuple)) else None
        if not only or not all(isinstance(p, str) for p in only):
            raise TypeError("only must be None, a key prefix (str) or a non-empty sequence of key prefixes")
        return only

    def update(self, params, grads, state, only=None):
        """One step on the keys selected by ``only`` (all by default); returns new (params, state).

        ``grads[k]`` must have the shape of ``params[k]`` for every stepped key.
        """
        only = self._check_only(only)
        for name, tree in (("params", params), ("grads", grads), ("state", state)):
            if not isinstance(tree, dict):
                raise TypeError(f"{name} must be a dict, got {type(tree).__name__}")
        selected = [k for k in params if self._selected(k, only)]
        if only is not None and not selected:
            raise ValueError(f"only={only} selects none of the parameters {sorted(params)}")
        missing = [k for k in selected if k not in grads]
        if missing:
            raise KeyError(f"grads has no entry for parameters {missing}")
        for k in selected:
            want, got = tuple(getattr(params[k], "shape", ())), tuple(getattr(grads[k], "shape", ()))
            if got != want:
                raise ValueError(f"grads[{k!r}] must have the shape of params[{k!r}] {want}, got {got}")
        new_params, new_state = dict(params), {k: dict(v) for k, v in state.items()}
        for k in params:
            if self._selected(k, only):
                new_params[k] = self._step(k, params[k], grads[k], new_state)
        return new_params, new_state


class SGD(_Optimizer):
    """Gradient descent with optional heavy-ball momentum: v = m v + g, p = p - lr v."""

    def __init__(self, lr=1e-2, momentum=0.0, group_lr=None):
        super().__init__(lr, group_lr)
        self.momentum = _checks.scalar("momentum", momentum, low=0.0, high=1.0)

    def init(self, params):
        return {"v": {k: 0.0 * v for k, v in params.items()}}

    def _step(self, k, p, g, state):
        v = self.momentum * state["v"][k] + g
        state["v"][k] = v
        return p - self.lr_for(k) * v


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with bias correction.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, group_lr=None):
        super().__init__(lr, group_lr)
        self.beta1 = _checks.scalar("beta1", beta1, low=0.0, high=1.0)
        self.beta2 = _checks.scalar("beta2", beta2, low=0.0, high=1.0)
        if self.beta1 >= 1.0 or self.beta2 >= 1.0:
            raise ValueError(f"beta1 and beta2 must be < 1, got {self.beta1}, {self.beta2}")
        self.eps = _checks.scalar("eps", eps, positive=True)

    def init(self, params):
        return {"m": {k: 0.0 * v for k, v in params.items()},
                "v": {k: 0.0 * v for k, v in params.items()},
                "t": {k: 0 for k in params}}

    def _step(self, k, p, g, state):
        t = state["t"][k] + 1
        m = self.beta1 * state["m"][k] + (1.0 - self.beta1) * g
        v = self.beta2 * state["v"][k] + (1.0 - self.beta2) * (g * g)
        state["t"][k], state["m"][k], state["v"][k] = t, m, v
        mhat = m / (1.0 - self.beta1 ** t)
        vhat = v / (1.0 - self.beta2 ** t)
        return p - self.lr_for(k) * mhat / (vhat ** 0.5 + self.eps)
