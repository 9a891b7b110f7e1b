"""Adam and SGD over parameter dicts, with per-group learning rates.

Optimisers are pure: ``state = opt.init(params)`` and
``params, state = opt.update(params, grads, state, only=None)`` return new dicts. ``only``
restricts a step to the keys under some prefixes (``only=("enc.",)`` steps the encoder
alone, as Lagging Inference Networks do); Adam's step count is kept per key, so skipped
keys keep their own bias correction.

``state`` is a dict tree: str keys, leaves arrays or numbers (``{"m": {key: array}, "v": {key:
array}, "t": {key: int}}`` for Adam), so it can be saved like parameters (``.npz``).

Fast path. ``params, state = opt.update_inplace(params, grads, state, only=None)`` takes the
same step, bitwise, but writes it into the arrays it is given, for a training loop that owns
its parameters. Its first call copies the parameters and the optimiser's slots (``m``, ``v``)
into one buffer each, the dicts it returns holding views into them; later calls on those dicts
step all the small arrays as one, so a step costs a dozen array operations instead of a dozen
per key. ``update`` (the readable one, ``_step``) is the reference the tests hold it to.
"""
from __future__ import annotations

from collections.abc import Mapping

from . import _checks
from .backend import xp_of

_FUSE_BELOW = 1 << 15   # arrays with fewer entries are stepped together by ``update_inplace``
_CHUNK = 1 << 15        # entries per operation in ``update_inplace`` (a few such slices fit in cache)


class _Optimizer:
    def __init__(self, lr, group_lr):
        self.lr = _checks.scalar("lr", lr, positive=True)
        if group_lr is not None and not isinstance(group_lr, Mapping):
            raise TypeError(f"group_lr must be None or a dict key prefix -> learning rate, e.g. {{'enc.': 1e-4}}, "
                            f"got {type(group_lr).__name__} {group_lr!r}")
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

    def _check_update(self, params, grads, state, only):
        """Validate ``update``'s arguments; returns the selected keys."""
        only = self._check_only(only)
        for name, tree in (("params", params), ("grads", grads), ("state", state)):
            if not isinstance(tree, dict):
                raise TypeError(f"{name} must be a dict, got {type(tree).__name__}")
        selected = list(params) if only is None else [k for k in params if self._selected(k, only)]
        if only is not None and not selected:
            raise ValueError(f"only={only} selects none of the parameters {sorted(params)}")
        need = params.keys() if only is None else set(selected)
        for slot in self._state_trees:           # a state made for other parameters fails here (~1 us, in C)
            tree = state.get(slot)
            if not isinstance(tree, dict) or not tree.keys() >= need:
                self._state_mismatch(selected, state, slot)
        missing = [k for k in selected if k not in grads]
        if missing:
            raise KeyError(f"grads has no entry for parameters {missing}")
        for k in selected:
            if getattr(grads[k], "shape", ()) != getattr(params[k], "shape", ()):
                want, got = tuple(getattr(params[k], "shape", ())), tuple(getattr(grads[k], "shape", ()))
                raise ValueError(f"grads[{k!r}] must have the shape of params[{k!r}] {want}, got {got}")
        return selected

    def _check_params(self, params):
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        return params

    @staticmethod
    def _state_mismatch(keys, state, slot):
        """Raise for a ``state`` whose ``state[slot]`` is not a dict holding every key of ``keys``."""
        tree = state.get(slot)
        if not isinstance(tree, dict):
            raise TypeError(f"state must be this optimiser's init(params): a dict whose state[{slot!r}] is a dict "
                            f"of per-key entries, got state[{slot!r}] = {type(tree).__name__} (state has keys "
                            f"{sorted(map(str, state))})")
        missing = [k for k in keys if k not in tree]
        extra = sorted(set(tree) - set(keys))
        raise KeyError(f"state[{slot!r}] has no entry for parameters {missing}"
                       + (f" (it has {extra[:8]}{' ...' if len(extra) > 8 else ''})" if extra else "")
                       + ": state must come from this optimiser's init(params) for these parameters")

    def update(self, params, grads, state, only=None):
        """One step on the keys selected by ``only`` (all by default); returns new (params, state).

        ``grads[k]`` must have the shape of ``params[k]`` for every stepped key. The arguments
        are left unchanged.
        """
        selected = self._check_update(params, grads, state, only)
        new_params, new_state = dict(params), {k: dict(v) for k, v in state.items()}
        for k in selected:
            new_params[k] = self._step(k, params[k], grads[k], new_state)
        return new_params, new_state

    def update_inplace(self, params, grads, state, only=None):
        """``update``'s step, bitwise, written into the arrays of ``params`` and ``state``.

        For a training loop that owns its parameters. Continue with the returned dicts: the
        first call (and any call with dicts it did not return) leaves its arguments unchanged
        and returns copies packed into one buffer per slot (parameters, ``m``, ``v``); later
        calls overwrite those arrays and the step counts in place and return the same dicts.
        Arguments, checks and errors as ``update``.
        """
        selected = self._check_update(params, grads, state, only)
        packed = self.__dict__.get("_packed")
        if packed is None or not packed.holds(params, state, self._slots):
            if not _Packed.can_pack(params):      # mixed dtypes or array types: the plain step
                return self.update(params, grads, state, only)
            packed = self._packed = _Packed(params, state, self._slots)
            params, state = packed.params, packed.state
        for run in packed.runs(selected, self, state):
            t = self._advance(run.keys, state)
            for p, g, slots, scratch in run.chunks(grads):
                self._step_inplace(p, g, slots, scratch, run.lr, t)
        return params, state

    def _advance(self, keys, state):
        """Count a step of ``keys`` in ``state``; the step count the update uses (None: none kept)."""
        return None


class SGD(_Optimizer):
    """Gradient descent with optional heavy-ball momentum: v = m v + g, p = p - lr v."""

    def __init__(self, lr=1e-2, momentum=0.0, group_lr=None):
        super().__init__(lr, group_lr)
        self.momentum = _checks.scalar("momentum", momentum, low=0.0, high=1.0)

    _slots = ("v",)
    _state_trees = _slots

    def init(self, params):
        """Fresh state for ``params`` (a dict of arrays): ``{"v": zeros like each}``."""
        self._check_params(params)
        return {"v": {k: 0.0 * v for k, v in params.items()}}

    def _step(self, k, p, g, state):
        v = self.momentum * state["v"][k] + g
        state["v"][k] = v
        return p - self.lr_for(k) * v

    def _step_inplace(self, p, g, slots, scratch, lr, t):
        """``_step``'s operations in place, on one key's arrays or on a slice of the buffers."""
        (v,), (s1, _), xp = slots, scratch, xp_of(p)
        v *= self.momentum
        v += g                                                            # v = m v + g
        p -= xp.multiply(v, lr, out=s1)


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

    _slots = ("m", "v")
    _state_trees = ("m", "v", "t")

    def init(self, params):
        """Fresh state for ``params`` (a dict of arrays): zero moments ``m``, ``v`` and step counts ``t``."""
        self._check_params(params)
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

    def _advance(self, keys, state):
        t = state["t"][keys[0]] + 1
        for k in keys:
            state["t"][k] = t
        return t

    def _step_inplace(self, p, g, slots, scratch, lr, t):
        """``_step``'s operations, in the same order, in place (on one key's arrays or on a slice of
        the buffers holding several keys with one learning rate and one step count t)."""
        (m, v), (s1, s2), xp = slots, scratch, xp_of(p)
        m *= self.beta1
        m += xp.multiply(g, 1.0 - self.beta1, out=s1)                     # m = b1 m + (1 - b1) g
        v *= self.beta2
        v += xp.multiply(xp.multiply(g, g, out=s1), 1.0 - self.beta2, out=s1)   # v = b2 v + (1 - b2) g^2
        step = xp.multiply(xp.divide(m, 1.0 - self.beta1 ** t, out=s1), lr, out=s1)
        denom = xp.add(xp.sqrt(xp.divide(v, 1.0 - self.beta2 ** t, out=s2), out=s2), self.eps, out=s2)
        p -= xp.divide(step, denom, out=s1)                               # lr mhat / (sqrt(vhat) + eps)


class _Run:
    """Keys stepped together: one key, or consecutive small keys sharing a learning rate ``lr`` and a
    step count, whose gradients are gathered into ``gbuf``. ``chunks`` hands out their parameters,
    gradient, slots and scratch (flat) ``_CHUNK`` entries at a time, so that the dozen operations of
    a step run on slices that stay in the CPU cache instead of streaming large arrays a dozen times.
    """

    def __init__(self, keys, lr, p, slots, scratch, gbuf=None):
        self.keys, self.lr, self.gbuf = keys, lr, gbuf
        self.bounds = [(a, min(a + _CHUNK, p.size)) for a in range(0, p.size, _CHUNK)]
        self.parts = [(p[a:b], [s[a:b] for s in slots], [w[:b - a] for w in scratch]) for a, b in self.bounds]

    def chunks(self, grads):
        if self.gbuf is None:
            g = grads[self.keys[0]].reshape(-1)
        else:
            g = xp_of(self.gbuf).concatenate([grads[k].reshape(-1) for k in self.keys], out=self.gbuf)
        for (a, b), (p, slots, scratch) in zip(self.bounds, self.parts):
            yield p, g[a:b], slots, scratch


class _Packed:
    """A training loop's parameters and optimiser slots copied into one buffer each (views per key).

    Keys with fewer than ``_FUSE_BELOW`` entries come first, in the order of ``params``, so that
    the small arrays ``update_inplace`` steps together are one slice of each buffer; larger
    arrays follow and are stepped one by one.
    """

    @staticmethod
    def can_pack(params):
        """One array type and one float type for every parameter (else the buffers would convert)."""
        kinds = {(type(v), getattr(v, "dtype", None)) for v in params.values()}
        return len(kinds) == 1 and getattr(next(iter(kinds))[1], "kind", None) == "f"

    def __init__(self, params, state, slots):
        xp = xp_of(*params.values())
        dtype = next(iter(params.values())).dtype
        order = sorted(params, key=lambda k: params[k].size >= _FUSE_BELOW)      # stable: small keys first
        self.small = [k for k in order if params[k].size < _FUSE_BELOW]
        self.where, end = {}, 0
        for k in order:
            self.where[k] = (end, end + params[k].size)
            end += params[k].size

        def pack(tree):
            buf = xp.empty(end, dtype)
            views = {k: buf[a:b].reshape(params[k].shape) for k, (a, b) in self.where.items()}
            for k, view in views.items():
                view[...] = tree[k]
            return buf, {k: views[k] for k in params}

        self.pbuf, self.params = pack(params)
        self.slot_bufs, slot_views = zip(*(pack(state[s]) for s in slots))
        self.state = {**state, **dict(zip(slots, slot_views))}
        if "t" in state:
            self.state["t"] = dict(state["t"])
        n_small = self.where[self.small[-1]][1] if self.small else 0
        self.gbuf = xp.empty(n_small, dtype)
        self._scratch = [xp.empty(min(end, _CHUNK), dtype) for _ in range(2)]
        self._keys = tuple(params)               # ``holds``: our views, in our order (we keep them alive)
        self._ids = {None: list(map(id, self.params.values())),
                     **{s: list(map(id, self.state[s].values())) for s in slots}}
        self.slot_names, self._plans = tuple(slots), {}

    def holds(self, params, state, slots):
        """Whether ``params`` and ``state``'s slots are (still) the views this object made, key for key."""
        return (tuple(params) == self._keys and list(map(id, params.values())) == self._ids[None]
                and all(isinstance(state.get(s), dict) and tuple(state[s]) == self._keys
                        and list(map(id, state[s].values())) == self._ids[s] for s in slots))

    def run(self, keys, lr):
        """A ``_Run`` of one key or of consecutive small keys (their slices of the buffers)."""
        a, b = self.where[keys[0]][0], self.where[keys[-1]][1]
        return _Run(keys, lr, self.pbuf[a:b], [buf[a:b] for buf in self.slot_bufs], self._scratch,
                    None if len(keys) == 1 else self.gbuf[a:b])

    def runs(self, selected, opt, state):
        """The selected keys as ``_Run``s: maximal runs of consecutive small keys sharing a learning
        rate and a step count, then every large key alone."""
        signature = (tuple(selected), opt.lr, tuple(opt.group_lr.items()))
        if signature not in self._plans:                  # worked out once per selection
            chosen = set(selected)
            groups = _split_runs(self.small, lambda k: opt.lr_for(k) if k in chosen else None)
            groups += [[k] for k in selected if k not in self.small]
            self._plans[signature] = [self.run(keys, opt.lr_for(keys[0])) for keys in groups]
        t = state.get("t")
        if t is None:
            return self._plans[signature]
        out = []
        for run in self._plans[signature]:                # keys stepped apart before (``only``) split further
            same = len({int(t[k]) for k in run.keys}) == 1    # (int: a count loaded from .npz is a 0-d array)
            out += [run] if same else [self.run(keys, run.lr) for keys in _split_runs(run.keys, lambda k: int(t[k]))]
        return out


def _split_runs(keys, tag):
    """``keys`` cut into maximal runs of consecutive keys with equal ``tag(key)``; None tags are dropped."""
    runs, last = [], None
    for k in keys:
        label = tag(k)
        if label is not None and runs and label == last:
            runs[-1].append(k)
        elif label is not None:
            runs.append([k])
        last = label
    return runs
