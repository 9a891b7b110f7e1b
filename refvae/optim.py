"""Adam and SGD over parameter dicts, with per-group learning rates.

Optimisers are pure: ``state = opt.init(params)`` and
``params, state = opt.update(params, grads, state, only=None)`` return new dicts. ``only``
restricts a step to the keys under some prefixes (``only=("enc.",)`` steps the encoder
alone, as Lagging Inference Networks do); Adam's step count is kept per key, so skipped
keys keep their own bias correction.

``state`` is a dict tree: str keys, leaves arrays or numbers (``{"m": {key: array}, "v": {key:
array}, "t": {key: int}}`` for Adam), so it can be saved like parameters (``.npz``).

Fast paths. ``params, state = opt.update_inplace(params, grads, state, only=None)`` takes the
same step, bitwise, but writes it into the arrays it is given, for a training loop that owns
its parameters. Its first call copies the parameters and the optimiser's slots (``m``, ``v``)
into one buffer each, the dicts it returns holding views into them; later calls on those dicts
step all the small arrays as one, so a step costs a dozen array operations instead of a dozen
per key. ``ring = opt.ring(params)``, then ``params, state = ring.update(params, grads, state,
only=None)``, takes the same step into the next of three such packed copies, so that the
arguments of the last two calls stay intact (``fit`` keeps the previous point to roll back to).
``update`` (the readable one, ``_step``) is the reference the tests hold both to.
"""
from __future__ import annotations

import operator
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
        if packed is None or not packed.holds(params, state):
            if not _Packed.can_pack(params):      # mixed dtypes or array types: the plain step
                return self.update(params, grads, state, only)
            packed = self._packed = _Packed(params, self._slots)
            params, state = packed.load(params, state)
        packed.step(self, selected, grads, state, packed)
        return params, state

    def ring(self, params):
        """A ``Ring`` stepping parameters shaped like ``params`` (a dict of arrays) with this optimiser;
        None where it cannot (mixed dtypes or array types, or a subclass whose ``update`` or ``_step``
        is its own: the packed step would not be its step)."""
        cls = type(self)
        own_step = next(c for c in cls.__mro__ if "_step" in vars(c))
        if cls.update is not _Optimizer.update or "_step_into" not in vars(own_step) \
                or not _Packed.can_pack(self._check_params(params)):
            return None
        return Ring(self, params)

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

    def _step_into(self, p, slots, g, out, scratch, lr, t):
        """``_step``'s operations, on one key's arrays or on a slice of the buffers, written into
        ``out`` = (p, slots) (the same arrays for a step in place)."""
        (v,), (p_out, (v_out,)), (s1, _), xp = slots, out, scratch, xp_of(p)
        v = xp.multiply(v, self.momentum, out=v_out)
        v += g                                                            # v = m v + g
        xp.subtract(p, xp.multiply(v, lr, out=s1), out=p_out)


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

    def _step_into(self, p, slots, g, out, scratch, lr, t):
        """``_step``'s operations, in the same order, on one key's arrays or on a slice of the buffers
        holding several keys with one learning rate and one step count t, written into ``out`` =
        (p, slots) (the same arrays for a step in place)."""
        (m, v), (p_out, (m_out, v_out)), (s1, s2), xp = slots, out, scratch, xp_of(p)
        m = xp.multiply(m, self.beta1, out=m_out)
        m += xp.multiply(g, 1.0 - self.beta1, out=s1)                     # m = b1 m + (1 - b1) g
        v = xp.multiply(v, self.beta2, out=v_out)
        v += xp.multiply(xp.multiply(g, g, out=s1), 1.0 - self.beta2, out=s1)   # v = b2 v + (1 - b2) g^2
        step = xp.multiply(xp.divide(m, 1.0 - self.beta1 ** t, out=s1), lr, out=s1)
        denom = xp.add(xp.sqrt(xp.divide(v, 1.0 - self.beta2 ** t, out=s2), out=s2), self.eps, out=s2)
        xp.subtract(p, xp.divide(step, denom, out=s1), out=p_out)        # p - lr mhat / (sqrt(vhat) + eps)


class Ring:
    """``update``'s step, bitwise, written into the next of three packed copies of the parameters
    and the optimiser's slots: for a training loop that keeps the point before its last step (to
    roll back to it) and steps without allocating. Made by ``opt.ring(params)``.

    ``params, state = ring.update(params, grads, state, only=None)`` (arguments, checks and errors
    as ``update``) leaves its arguments and those of the call before it unchanged, and returns
    views into the ring, which the third call after it overwrites: a loop hands copies to anyone
    who keeps them longer. Arguments that are not the last call's result (the first call's, or
    arrays the loop put in their place) are copied into the ring first.
    """

    def __init__(self, opt, params):
        first = _Packed(params, opt._slots)
        self.opt, self.last, self._selected = opt, 0, {}
        self.copies = [first] + [_Packed(params, opt._slots, like=first) for _ in range(2)]

    def update(self, params, grads, state, only=None):
        """The optimiser's ``update`` step into the next copy; returns (params, state) viewing it."""
        return self._update(params, grads, state, self.opt._check_update(params, grads, state, only))

    def update_unchecked(self, params, grads, state, only=None):
        """``update`` without its checks (made once per ``only``), for a loop whose gradients come from
        an objective that checked these parameters: the same step; bad input gives a NumPy error or
        a wrong number instead of a message naming the argument."""
        key = only if only is None or isinstance(only, str) else tuple(only)
        if key not in self._selected:
            self._selected[key] = self.opt._check_update(params, grads, state, only)
        return self._update(params, grads, state, self._selected[key])

    def _update(self, params, grads, state, selected):
        src, dst = self.copies[self.last], self.copies[(self.last + 1) % 3]
        if not src.holds(params, state):         # into the copy no argument of the last two calls uses
            params, state = dst.load(params, state)
            src = dst
        state = dst.state_for(state)
        src.step(self.opt, selected, grads, state, dst)
        self.last = (self.last + 1) % 3
        return dst.params, state


class _Run:
    """Keys stepped together: one key, or consecutive small keys sharing a learning rate ``lr`` and a
    step count, whose gradients are gathered into ``gbuf``. ``chunks`` hands out their parameters and
    slots (from ``src``), gradient, the arrays to write (``dst``: the same, or another copy's) and
    scratch (flat) ``_CHUNK`` entries at a time, so that the dozen operations of a step run on slices
    that stay in the CPU cache instead of streaming large arrays a dozen times.
    """

    def __init__(self, keys, lr, src, dst, scratch, gbuf=None):
        self.keys, self.lr, self.gbuf = keys, lr, gbuf
        self.bounds = [(a, min(a + _CHUNK, src[0].size)) for a in range(0, src[0].size, _CHUNK)]
        cut = lambda p, slots, a, b: (p[a:b], [s[a:b] for s in slots])       # noqa: E731
        self.parts = [(cut(*src, a, b), cut(*dst, a, b), [w[:b - a] for w in scratch]) for a, b in self.bounds]

    def chunks(self, grads):
        if self.gbuf is None:
            g = grads[self.keys[0]].reshape(-1)
        else:
            g = xp_of(self.gbuf).concatenate([grads[k].reshape(-1) for k in self.keys], out=self.gbuf)
        for (a, b), ((p, slots), out, scratch) in zip(self.bounds, self.parts):
            yield p, slots, g[a:b], out, scratch


class _Packed:
    """One copy of a training loop's parameters and optimiser slots, in one buffer each (views per key).

    Keys with fewer than ``_FUSE_BELOW`` entries come first, in the order of ``params``, so that
    the small arrays stepped together are one slice of each buffer; larger arrays follow and are
    stepped one by one. Copies of one layout (``like``) share their scratch space.
    """

    @staticmethod
    def can_pack(params):
        """One array type and one float type for every parameter (else the buffers would convert)."""
        kinds = {(type(v), getattr(v, "dtype", None)) for v in params.values()}
        return len(kinds) == 1 and getattr(next(iter(kinds))[1], "kind", None) == "f"

    def __init__(self, params, slots, like=None):
        xp = xp_of(*params.values())
        dtype = next(iter(params.values())).dtype
        self.order = sorted(params, key=lambda k: params[k].size >= _FUSE_BELOW)      # stable: small keys first
        self.small = [k for k in self.order if params[k].size < _FUSE_BELOW]
        self.where, end = {}, 0
        for k in self.order:
            self.where[k] = (end, end + params[k].size)
            end += params[k].size

        def views(buf):
            return {k: buf[slice(*self.where[k])].reshape(params[k].shape) for k in params}

        self.pbuf, self.slot_bufs = xp.empty(end, dtype), [xp.empty(end, dtype) for _ in slots]
        self.params = views(self.pbuf)
        self.slots = {s: views(buf) for s, buf in zip(slots, self.slot_bufs)}
        if like is None:
            n_small = self.where[self.small[-1]][1] if self.small else 0
            self.gbuf = xp.empty(n_small, dtype)
            self._scratch = [xp.empty(min(end, _CHUNK), dtype) for _ in range(2)]
        else:
            self.gbuf, self._scratch = like.gbuf, like._scratch
        self._keys = tuple(params)               # ``holds``: our views, in our order
        self._views = {None: list(self.params.values()), **{s: list(v.values()) for s, v in self.slots.items()}}
        self._plans = {}

    def load(self, params, state):
        """Copy ``params`` and ``state``'s slots in; returns (params, state) holding views into this copy."""
        for k, view in self.params.items():
            view[...] = params[k]
        for s, views in self.slots.items():
            for k, view in views.items():
                view[...] = state[s][k]
        return self.params, self.state_for(state)

    def state_for(self, state):
        """A new state dict: ``state``'s entries, this copy's slots and a copy of the step counts."""
        new = {**state, **self.slots}
        if "t" in state:
            new["t"] = dict(state["t"])
        return new

    def holds(self, params, state):
        """Whether ``params`` and ``state``'s slots are (still) this copy's views, key for key."""
        return (tuple(params) == self._keys and _same_arrays(params, self._views[None])
                and all(_same_arrays(state.get(s), self._views[s]) for s in self.slots))

    def step(self, opt, selected, grads, state, dst):
        """``opt``'s step of the ``selected`` keys from this copy into ``dst`` (this copy, or another of
        the same layout), counted in ``state``; the keys not selected are copied into ``dst`` as they are."""
        runs, rest = self._plan(selected, opt, dst)
        t = state.get("t")
        for run in runs:
            if t is not None and len({int(t[k]) for k in run.keys}) > 1:   # keys stepped apart before (``only``)
                split = [self._run(keys, run.lr, dst) for keys in _split_runs(run.keys, lambda k: int(t[k]))]
            else:                                                           # (int: a count loaded from .npz)
                split = [run]
            for part in split:
                count = opt._advance(part.keys, state)
                for p, slots, g, out, scratch in part.chunks(grads):
                    opt._step_into(p, slots, g, out, scratch, part.lr, count)
        for a, b in rest:
            b[...] = a

    def _run(self, keys, lr, dst):
        """A ``_Run`` of one key or of consecutive small keys (their slices of the buffers)."""
        a, b = self.where[keys[0]][0], self.where[keys[-1]][1]
        cut = lambda copy: (copy.pbuf[a:b], [buf[a:b] for buf in copy.slot_bufs])   # noqa: E731
        return _Run(keys, lr, cut(self), cut(dst), self._scratch, None if len(keys) == 1 else self.gbuf[a:b])

    def _plan(self, selected, opt, dst):
        """(runs, rest) for a step of the ``selected`` keys into ``dst``, worked out once per selection:
        maximal runs of consecutive small keys sharing a learning rate, then every large key alone;
        and the slices of the keys not selected, paired with ``dst``'s (none when ``dst`` is this copy)."""
        signature = (tuple(selected), opt.lr, tuple(opt.group_lr.items()), dst)
        if signature not in self._plans:
            chosen = set(selected)
            groups = _split_runs(self.small, lambda k: opt.lr_for(k) if k in chosen else None)
            groups += [[k] for k in selected if k not in self.small]
            runs = [self._run(keys, opt.lr_for(keys[0]), dst) for keys in groups]
            rest = []
            if dst is not self:
                for keys in _split_runs(self.order, lambda k: None if k in chosen else True):
                    a, b = self.where[keys[0]][0], self.where[keys[-1]][1]
                    rest += [(mine[a:b], theirs[a:b]) for mine, theirs in
                             zip([self.pbuf, *self.slot_bufs], [dst.pbuf, *dst.slot_bufs])]
            self._plans[signature] = runs, rest
        return self._plans[signature]


def _same_arrays(tree, arrays):
    """Whether ``tree`` is a dict whose values are the objects ``arrays``, in that order."""
    return isinstance(tree, dict) and len(tree) == len(arrays) and all(map(operator.is_, tree.values(), arrays))


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
