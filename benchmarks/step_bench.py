"""How fast is one refvae training step? Ratios against a lean NumPy step, PyTorch and JAX, side by side.

    python benchmarks/step_bench.py            # the table (refvae vs lean NumPy; PyTorch, JAX if installed)
    python benchmarks/step_bench.py --quick    # fewer, shorter repeats
    python benchmarks/step_bench.py --threads  # also 1 vs 2 BLAS threads (needs threadpoolctl)
    python benchmarks/step_bench.py --fit      # fit's columns alone, with and without a callback
    make bench                                 # the same, BENCH_ARGS passed through

One step = the gradient of the mean -ELBO of a Gaussian VAE (tanh MLPs, learned scalar
observation noise, one noise sample per point, closed-form KL) and one Adam step, on a fixed
batch and fixed noise. Columns:

- PyTorch (CPU, float64, ``torch.optim.Adam``) and JAX (``jax.jit`` of value_and_grad + Adam,
  float64): outside references, when installed (``pip install 'refvae[bench]'``); never needed.
- lean: ``benchmarks/lean.py``, the same maths written for speed alone; its loss and gradients
  are checked equal to refvae's (relative 1e-12) before anything is timed.
- refvae: ``value_and_grad_unchecked`` + ``Adam.update_inplace``, the path a training loop takes;
  "public": ``value_and_grad`` + ``Adam.update`` (validated, pure); Adam: the in-place update
  alone and its share of the step; fit: ``refvae.train.fit``'s cost per step, without its
  once-per-call set-up ((T(n steps) - T(1 step)) / (n - 1)), over the bare refvae step and over
  the public one (minibatches of the same size from 10 batches of data; noise drawn, history
  kept, divergence checks).
- R = 10: ten restarts as one refvae program (a leading restarts axis) against ten single
  steps, and against JAX's ``vmap`` over ten models.
- float32: the large net in float32 (``refvae.backend.use_dtype("float32")``) over float64.

Timing. All implementations are timed in one process, interleaved (each repeat runs every
column once, in a rotating order), single-threaded (BLAS, PyTorch and XLA pools at one thread;
``--threads`` then times 1 against 2 BLAS threads on the wall clock); each cell is the median
over repeats of the time per step, with the range over repeats in brackets; a ratio is the
median of the per-repeat ratios. The default clock is the process's CPU time, which a shared
machine disturbs less than wall time (``--clock wall``).
Absolute times vary between machines and with load; the ratios are the result.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# one thread everywhere (``--threads`` raises the BLAS limit with threadpoolctl for its own table):
# set before NumPy, PyTorch or JAX load
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lean import LOG_2PI, LeanVAE  # noqa: E402

from refvae.backend import blas_thread_counts, blas_threads, use_dtype  # noqa: E402
from refvae.objectives import GaussianVAE  # noqa: E402
from refvae.optim import Adam  # noqa: E402

NETS = {  # name -> (data dim d, latent dim K, hidden widths, batch)
    "2-50x2-1, 100": (2, 1, (50, 50), 100),
    "2-200x4-1, 100": (2, 1, (200,) * 4, 100),
    "784-512x2-20, 256": (784, 20, (512, 512), 256),
}
SMALL, LARGE = "2-50x2-1, 100", "784-512x2-20, 256"
LR = 1e-3


# -- the problem ---------------------------------------------------------------------------
class Problem:
    """One net's model, parameters (R restarts or none), batch, noise and a 10-batch data set."""

    def __init__(self, net, restarts=None, dtype="float64", seed=0):
        d, K, hidden, B = NETS[net]
        self.d, self.K, self.hidden, self.B, self.R = d, K, hidden, B, restarts
        self.model = GaussianVAE.from_sizes(d, K, hidden, "tanh", obs="scalar")
        rng = np.random.default_rng(seed)
        with use_dtype(dtype):
            self.params = self.model.init(rng, restarts)
        self.dtype = self.params["enc.0.W"].dtype
        self.data = rng.standard_normal((10 * B, d)).astype(self.dtype)
        self.x = self.data[:B]
        self.noise = rng.standard_normal(self.model.noise_shape(self.params, B)).astype(self.dtype)


# -- refvae ----------------------------------------------------------------------------------
def refvae_step(pb, public=False):
    """The training-loop path, value_and_grad_unchecked + Adam.update_inplace; or the validated,
    pure path a user calls by hand, value_and_grad + Adam.update (``public``)."""
    opt = Adam(LR)
    value_and_grad = pb.model.value_and_grad if public else pb.model.value_and_grad_unchecked
    update = opt.update if public else opt.update_inplace
    box = {"p": pb.params, "s": opt.init(pb.params)}

    def step():
        loss, grads = value_and_grad(box["p"], pb.x, pb.noise)
        box["p"], box["s"] = update(box["p"], grads, box["s"])
        return loss
    return step


def refvae_adam(pb):
    """Adam.update_inplace alone, on fixed gradients."""
    opt = Adam(LR)
    grads = pb.model.value_and_grad(pb.params, pb.x, pb.noise)[1]
    box = {"p": pb.params, "s": opt.init(pb.params)}

    def step():
        box["p"], box["s"] = opt.update_inplace(box["p"], grads, box["s"])
    return step


def refvae_fit(pb, steps, callback=None):
    """``fit`` for ``steps`` steps on minibatches of B from 10 B points; returns (run, steps)."""
    from refvae.train import fit

    def run():
        fit(pb.model, pb.params, pb.data, steps=steps, seed=1, batch_size=pb.B, optimizer=Adam(LR),
            callback=callback)
    return run, steps


def fit_per_step(t, long, short=1, name="fit"):
    """fit's cost per step without its once-per-call set-up: (T(long) - T(short)) / (long - short),
    from the per-step times of the ``fit`` (``long`` steps) and ``fit1`` (``short`` steps) columns."""
    return [(a * long - b * short) / (long - short) for a, b in zip(t[name], t[name + "1"])]


# -- lean NumPy --------------------------------------------------------------------------------
def lean_step(pb):
    lean = LeanVAE(pb.params, pb.d, pb.K, pb.hidden, dtype=pb.dtype)
    return lambda: lean.step(pb.x, pb.noise, LR)


def check_lean(pb, tol=1e-12):
    """The lean step computes refvae's loss and gradients (relative max error <= tol); returns it."""
    loss, grads = pb.model.value_and_grad(pb.params, pb.x, pb.noise)
    lean = LeanVAE(pb.params, pb.d, pb.K, pb.hidden)
    lean_loss = lean.loss_and_grad(pb.x, pb.noise)
    err = abs(lean_loss - float(loss)) / abs(float(loss))
    for k, g in lean.grads_dict().items():
        err = max(err, float(np.abs(g - grads[k]).max() / max(np.abs(grads[k]).max(), 1e-300)))
    if not err <= tol:
        raise AssertionError(f"the lean step disagrees with refvae: relative error {err:.2e} > {tol:.0e}")
    return err


# -- PyTorch and JAX ------------------------------------------------------------------------------
def reference_loss(lib, p, x, eps, n_layers, K):
    """The mean -ELBO written with ``lib`` (torch or jax.numpy) for its automatic differentiation."""
    def mlp(h, net):
        for i in range(n_layers):
            h = h @ p[f"{net}.{2 * i}.W"] + p[f"{net}.{2 * i}.b"]
            h = lib.tanh(h) if i < n_layers - 1 else h
        return h
    out = mlp(x, "enc")
    mu, lv = out[:, :K], out[:, K:]
    mean = mlp(mu + lib.exp(0.5 * lv) * eps, "dec")
    olv = p["dec.obs_logvar"]
    logp = -0.5 * ((x - mean) ** 2 * lib.exp(-olv) + olv + LOG_2PI)
    kl = 0.5 * (mu * mu + lib.exp(lv) - lv - 1.0).sum(-1)
    return -logp.sum(-1).mean() + kl.mean()


def torch_step(pb):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in pb.params.items()}
    x, eps = torch.tensor(pb.x), torch.tensor(pb.noise)
    opt = torch.optim.Adam(list(p.values()), lr=LR)

    def loss_fn():
        return reference_loss(torch, p, x, eps, len(pb.hidden) + 1, pb.K)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss

    return step, float(loss_fn().detach())


def jax_steps(pb, restarts=None):
    """A jitted value_and_grad + Adam step (vmapped over a leading restarts axis if ``restarts``)."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss_fn(p, x, eps):
        return reference_loss(jnp, p, x, eps, len(pb.hidden) + 1, pb.K)

    b1, b2, eps_adam = 0.9, 0.999, 1e-8

    def step(p, m, v, t, x, eps):
        loss, g = jax.value_and_grad(loss_fn)(p, x, eps)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        p = jax.tree_util.tree_map(
            lambda p, m, v: p - LR * (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps_adam), p, m, v)
        return loss, p, m, v, t

    if restarts is not None:
        step = jax.vmap(step, in_axes=(0, 0, 0, None, None, 0), out_axes=(0, 0, 0, 0, None))
    step = jax.jit(step, donate_argnums=(0, 1, 2))
    p = {k: jnp.asarray(v) for k, v in pb.params.items()}
    box = {"p": p, "m": jax.tree_util.tree_map(jnp.zeros_like, p), "v": jax.tree_util.tree_map(jnp.zeros_like, p),
           "t": jnp.asarray(0.0)}
    x, eps = jnp.asarray(pb.x), jnp.asarray(pb.noise)
    first = float(jnp.sum(jax.jit(jax.vmap(loss_fn, in_axes=(0, None, 0)) if restarts else loss_fn)(p, x, eps)))

    def run():
        loss, box["p"], box["m"], box["v"], box["t"] = step(box["p"], box["m"], box["v"], box["t"], x, eps)
        return loss
    return run, first


# -- timing ----------------------------------------------------------------------------------------
def clock(kind):
    return time.process_time if kind == "cpu" else time.perf_counter


def _sync(out):
    if hasattr(out, "block_until_ready"):
        out.block_until_ready()


def calibrate(fn, target, tick):
    """Steps per block so that a block takes about ``target`` seconds (at least 1)."""
    _sync(fn())
    n, elapsed = 1, 0.0
    while True:
        t0 = tick()
        for _ in range(n):
            out = fn()
        _sync(out)
        elapsed = tick() - t0
        if elapsed >= target / 4 or n >= 1 << 16:
            return max(1, int(round(n * target / max(elapsed, 1e-9))))
        n *= 4


def measure(fns, repeats, target, tick):
    """name -> list (one per repeat) of seconds per step; every repeat runs every function once."""
    names = list(fns)
    per_call = {k: fns[k][1] if isinstance(fns[k], tuple) else 1 for k in names}
    calls = {k: (fns[k][0] if isinstance(fns[k], tuple) else fns[k]) for k in names}
    blocks = {k: calibrate(calls[k], target, tick) for k in names}
    times = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = tick()
            for _ in range(blocks[k]):
                out = calls[k]()
            _sync(out)
            times[k].append((tick() - t0) / (blocks[k] * per_call[k]))
    return times


def cell(ts):
    ms = np.array(ts) * 1e3
    return f"{np.median(ms):.3g} ms [{ms.min():.3g}-{ms.max():.3g}]"


def ratio(a, b, scale=1.0):
    r = np.array(a) / (np.array(b) * scale)
    return f"{np.median(r):.2f}x [{r.min():.2f}-{r.max():.2f}]"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    print("\n".join(lines))
    sys.stdout.flush()


# -- the sections -----------------------------------------------------------------------------------
def main_table(nets, repeats, target, tick, with_fit=True):
    rows, inner = [], []
    for net in nets:
        pb = Problem(net)
        err = check_lean(pb)
        fns = {"lean": lean_step(pb), "refvae": refvae_step(pb), "public": refvae_step(pb, public=True),
               "adam": refvae_adam(pb)}
        ref = float(pb.model.value_and_grad(pb.params, pb.x, pb.noise)[0])
        outside = {"torch": torch_step(pb), "jax": jax_steps(pb)}
        for name, got in outside.items():
            if got is not None:
                fns[name], first = got
                if abs(first - ref) > 1e-10 * abs(ref):
                    raise AssertionError(f"{name} computes another loss: {first!r} against refvae's {ref!r}")
        if with_fit:
            steps = max(10, int(round(0.5 / max(_rough(fns["refvae"]), 1e-6) / 5)))
            fns["fit"], fns["fit1"] = refvae_fit(pb, steps), refvae_fit(pb, 1)
        t = measure(fns, repeats, target, tick)
        if with_fit:
            t["fit"] = fit_per_step(t, steps)
        na = "not installed"
        rows.append([net, cell(t["torch"]) if "torch" in t else na, cell(t["jax"]) if "jax" in t else na,
                     cell(t["lean"]), cell(t["refvae"]), ratio(t["refvae"], t["lean"]),
                     ratio(t["refvae"], t["jax"]) if "jax" in t else na, f"{err:.0e}"])
        inner.append([net, cell(t["public"]), ratio(t["public"], t["refvae"]),
                      f"{cell(t['adam'])}, {_share(t['adam'], t['refvae'])}",
                      cell(t["fit"]) if "fit" in t else "-",
                      ratio(t["fit"], t["public"]) if "fit" in t else "-",
                      ratio(t["fit"], t["refvae"]) if "fit" in t else "-"])
    table(["net, batch", "PyTorch", "JAX jit", "lean NumPy", "refvae step", "refvae / lean", "refvae / JAX",
           "lean vs refvae, rel. error"], rows)
    print()
    table(["net, batch", "refvae public API step", "public / step", "of which Adam (share)", "fit per step",
           "fit / public step", "fit / step"], inner)


def fit_table(nets, repeats, target, tick):
    """``--fit``: fit's columns alone (per step, over the bare step), and with a callback that does
    nothing (what handing it the parameters costs)."""
    rows = []
    for net in nets:
        pb = Problem(net)
        fns = {"refvae": refvae_step(pb)}
        steps = max(10, int(round(0.5 / max(_rough(fns["refvae"]), 1e-6) / 5)))
        fns["fit"], fns["fit1"] = refvae_fit(pb, steps), refvae_fit(pb, 1)
        idle = lambda t, p, info: False  # noqa: E731
        fns["cb"], fns["cb1"] = refvae_fit(pb, steps, idle), refvae_fit(pb, 1, idle)
        t = measure(fns, repeats, target, tick)
        t["fit"], t["cb"] = fit_per_step(t, steps), fit_per_step(t, steps, name="cb")
        rows.append([net, cell(t["refvae"]), cell(t["fit"]), ratio(t["fit"], t["refvae"]), cell(t["cb"]),
                     ratio(t["cb"], t["refvae"]), ratio(t["cb"], t["fit"])])
    table(["net, batch", "refvae step", "fit per step", "fit / step", "fit with a callback, per step",
           "fit with a callback / step", "with / without the callback"], rows)


def _share(part, whole):
    r = np.array(part) / np.array(whole) * 100
    return f"{np.median(r):.0f}% [{r.min():.0f}-{r.max():.0f}%]"


def _rough(fn, n=3):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def restarts_table(repeats, target, tick, R=10):
    single, many = Problem(SMALL), Problem(SMALL, restarts=R)
    fns = {"single": refvae_step(single), "R": refvae_step(many)}
    jx = jax_steps(many, restarts=R)
    if jx is not None:
        fns["jax_vmap"], first = jx
        ref = float(many.model.value_and_grad(many.params, many.x, many.noise)[0].sum())
        if abs(first - ref) > 1e-10 * abs(ref):
            raise AssertionError(f"JAX's vmap computes another loss: {first!r} against refvae's {ref!r}")
        js = jax_steps(single)
        fns["jax"] = js[0]
    t = measure(fns, repeats, target, tick)
    na = "not installed"
    table([f"net, batch (R = {R})", f"refvae, R = {R} in one program", "refvae, one model",
           f"R = {R} / {R} single steps", f"JAX vmap, R = {R}", "refvae / JAX vmap", f"JAX vmap / {R} JAX steps"],
          [[SMALL, cell(t["R"]), cell(t["single"]), ratio(t["R"], t["single"], R),
            cell(t["jax_vmap"]) if "jax_vmap" in t else na,
            ratio(t["R"], t["jax_vmap"]) if "jax_vmap" in t else na,
            ratio(t["jax_vmap"], t["jax"], R) if "jax" in t else na]])


def float32_table(repeats, target, tick):
    f64, f32 = Problem(LARGE), Problem(LARGE, dtype="float32")
    fns = {"f64": refvae_step(f64), "f32": refvae_step(f32), "lean64": lean_step(f64), "lean32": lean_step(f32)}
    t = measure(fns, repeats, target, tick)
    table(["net, batch", "refvae float64", "refvae float32", "float32 / float64", "lean float32",
           "refvae / lean, float32"],
          [[LARGE, cell(t["f64"]), cell(t["f32"]), ratio(t["f32"], t["f64"]), cell(t["lean32"]),
            ratio(t["f32"], t["lean32"])]])


def threads_table(nets, repeats, target):
    """Wall time of the refvae step at 1 and 2 BLAS threads (limits switched by blas_threads)."""
    probe = blas_threads(1)
    probe.restore()
    if not probe.applied:
        print("threads: threadpoolctl is not installed, so the BLAS pool of this process cannot be resized "
              "(pip install threadpoolctl); skipped")
        return
    rows = []
    for net in nets:
        step = refvae_step(Problem(net))
        with blas_threads(1):
            n = calibrate(step, target, time.perf_counter)
        t = {1: [], 2: []}
        for r in range(repeats):
            for threads in (1, 2) if r % 2 == 0 else (2, 1):
                with blas_threads(threads):                   # the limit is set once per block
                    t0 = time.perf_counter()
                    for _ in range(n):
                        step()
                    t[threads].append((time.perf_counter() - t0) / n)
        rows.append([net, cell(t[1]), cell(t[2]), ratio(t[2], t[1])])
    table(["net, batch", "1 BLAS thread (wall)", "2 BLAS threads (wall)", "2 threads / 1"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 short repeats instead of 7")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--threads", action="store_true", help="also time 1 against 2 BLAS threads (wall clock)")
    ap.add_argument("--fit", action="store_true", help="only fit's columns (with and without a callback)")
    ap.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of: " + "; ".join(NETS))
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    target = 0.05 if args.quick else 0.2
    tick = clock(args.clock)
    nets = [n.strip() for n in args.nets.split(",")] if args.nets != ",".join(NETS) else list(NETS)
    nets = [n for n in NETS if any(n.startswith(s.split(",")[0]) for s in nets)]
    versions = [f"numpy {np.__version__}"]
    for mod in ("torch", "jax"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    print(f"# refvae step benchmark: {args.clock} clock, {repeats} interleaved repeats, median [range]; "
          f"{', '.join(versions)}; BLAS threads {blas_thread_counts() or os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    if args.fit:
        fit_table(nets, repeats, target, tick)
        print(f"\nload average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
        return 0
    main_table(nets, repeats, target, tick)
    print()
    restarts_table(repeats, target, tick)
    print()
    if LARGE in nets:
        float32_table(repeats, target, tick)
        print()
    if args.threads:
        threads_table(nets, repeats, target)
        print()
    print(f"load average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
