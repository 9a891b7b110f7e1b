"""``refvae verify --jobs N``: claims in worker processes give the serial run's numbers and report.

The fake claims are module-level functions, so that a 'spawn' worker can unpickle them by name;
they are registered only inside the fixture (on a copy of the registry).
"""
import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from refvae.verify import REGISTRY, Outcome, Part, Row, claim, main
from refvae.verify import cli, registry

TIMING = ("seconds", "cpu_seconds")
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def fake_gaussian(ctx):
    x = ctx.rng("fake_gaussian").standard_normal((40, 3))
    return Outcome(passed=True, measured={"cov": (x.T @ x / 40).tolist(), "mean": x.mean(axis=0).tolist()},
                   summary=f"trace {np.trace(x.T @ x):.6f}")


def fake_parts(ctx):
    draws = ctx.rng("fake_parts").uniform(size=5)
    return Outcome(parts=[Part("draws above 0.1", bool((draws > 0.1).all()), str(draws.round(3))),
                          Part("draws below 2", True, "")],
                   rows=[Row("draw", draws.tolist(), paper=0.5)], measured={"draws": draws.tolist()},
                   summary="fake parts", rule="every part")


def fake_env(ctx):
    from refvae import backend, train
    return Outcome(passed=True, summary="environment", measured={k: os.environ.get(k) for k in BLAS_THREAD_VARS}
                   | {"pid": os.getpid(), "threads": backend.blas_thread_counts(),   # {} without threadpoolctl
                      "divergence": train.resolve_policy(None)})


def fake_raises(ctx):
    raise ValueError("bad input inside the worker")


def fake_dies(ctx):
    os._exit(3)                        # a worker killed from outside (out of memory, kill -9) looks like this


def fake_slow(ctx):
    with open(os.path.join(ctx.out, "slow.pid"), "w") as f:
        f.write(str(os.getpid()))
    for _ in range(1200):              # ends by itself after 2 minutes, so a broken test fails, not hangs
        time.sleep(0.1)
    return Outcome(passed=True, summary="slow")


FAKES = {"fake_gaussian": ("theorem", fake_gaussian), "fake_parts": ("empirical", fake_parts),
         "fake_env": ("theorem", fake_env), "fake_raises": ("empirical", fake_raises),
         "fake_dies": ("empirical", fake_dies), "fake_slow": ("empirical", fake_slow)}


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr(cli, "REGISTRY", registry.REGISTRY)
    for name, (kind, run) in FAKES.items():
        claim(name, paper="berger2020", kind=kind, statement=name)(run)
    return registry.REGISTRY


def run(tmp_path, folder, args):
    out = tmp_path / folder
    status = main(args + ["--out", str(out)], stream=io.StringIO())
    return status, json.loads((out / "report.json").read_text())


def without_timing(rep):
    return [{k: v for k, v in c.items() if k not in TIMING} for c in rep["claims"]]


# two quick real claims (about 1.5 s CPU each in --mini): the numbers must not depend on the process
REAL = ("spiral_dots_noise", "elbo_prefers_more_latents")


def test_jobs_2_equals_serial_on_fake_and_real_claims(fakes, tmp_path, monkeypatch):
    # one pool (starting a worker costs ~1.5 s CPU) for: same numbers as serial, on fake and on real claims;
    # a worker's exception is an ERROR; one BLAS thread per worker
    for k in BLAS_THREAD_VARS:
        monkeypatch.setenv(k, "4")
    names = ("fake_gaussian", "fake_parts", "fake_raises", "fake_env") + REAL
    args = ["--mini", "--seed", "11"] + [a for n in names for a in ("--only", n)]
    s_status, serial = run(tmp_path, "serial", args)
    p_status, parallel = run(tmp_path, "parallel", args + ["--jobs", "2"])
    assert s_status == p_status == 1 and parallel["failed"] == serial["failed"] == ["fake_raises"]
    assert [c["name"] for c in parallel["claims"]] == list(names)
    same = [0, 1, 2, 4, 5]                          # all but fake_env, which reports its own process
    assert [without_timing(parallel)[i] for i in same] == [without_timing(serial)[i] for i in same]
    for s, p in zip(serial["claims"][4:], parallel["claims"][4:]):
        assert p["measured"] == s["measured"] and p["rows"] == s["rows"] and p["parts"] == s["parts"]
    c = {x["name"]: x for x in parallel["claims"]}
    assert c["fake_raises"]["verdict"] == "ERROR" and c["fake_raises"]["error"] == "ValueError: bad input inside the worker"
    env = c["fake_env"]["measured"]
    assert env["pid"] != os.getpid() and {k: env[k] for k in BLAS_THREAD_VARS} == dict.fromkeys(BLAS_THREAD_VARS, "1")
    assert all(n == 1 for n in env["threads"].values()) and env["divergence"] == "isolate"
    assert all(os.environ[k] == "4" for k in BLAS_THREAD_VARS)     # this process's setting is restored
    assert parallel["meta"]["complete"] and parallel["meta"]["jobs"] == 2
    assert all(x["cpu_seconds"] is not None and x["seconds"] >= 0 for x in parallel["claims"])


def test_dead_worker_leaves_a_partial_report(fakes, tmp_path, capsys):
    status, rep = run(tmp_path, "o", ["--mini", "--jobs", "2", "--only", "fake_dies"])
    assert status == 1
    assert rep["meta"]["status"] == "crashed" and not rep["meta"]["complete"] and rep["meta"]["not_run"] == ["fake_dies"]
    assert "worker process died" in capsys.readouterr().err


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_with_jobs_ends_workers_and_keeps_the_finished_claims(fakes, tmp_path):
    out = tmp_path / "o"
    # Ctrl-C reaches a foreground process as KeyboardInterrupt; a process started in the background by a
    # shell without job control (``make test &``) inherits SIGINT ignored, and the signal sent below would
    # do nothing (the test then waited for the slow claim's 2 minutes and failed). Restore the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_once_the_first_claim_is_reported():
        for _ in range(1200):
            try:
                if json.loads((out / "report.json").read_text())["claims"] and (out / "slow.pid").exists():
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)                      # what Ctrl-C sends
    threading.Thread(target=interrupt_once_the_first_claim_is_reported, daemon=True).start()
    try:
        status = main(["--mini", "--jobs", "2", "--only", "fake_gaussian", "--only", "fake_slow", "--out", str(out)],
                      stream=io.StringIO())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == 130
    rep = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in rep["claims"]] == ["fake_gaussian"]
    assert rep["meta"]["status"] == "interrupted" and rep["meta"]["not_run"] == ["fake_slow"]
    assert not _alive(int((out / "slow.pid").read_text()))      # the running claim's worker was ended


def test_longest_claims_start_first(tmp_path):
    names = ["a", "b", "c"]

    class Args:
        out, profile = str(tmp_path), "mini"

    class C:
        def __init__(self, name):
            self.name = name
    (tmp_path / "report.json").write_text(json.dumps({
        "meta": {"profile": "mini"}, "claims": [{"name": "a", "cpu_seconds": 1.0}, {"name": "c", "cpu_seconds": 9.0}]}))
    key = cli._expected_seconds(names, Args)
    assert sorted(names, key=lambda n: key(C(n)), reverse=True) == ["c", "b", "a"]   # b: the median, 5 s
    Args.profile = "quick"                                       # a report of another profile is ignored
    table = cli.EXPECTED_SECONDS
    longest, shortest = max(table, key=table.get), min(table, key=table.get)
    key = cli._expected_seconds([longest, shortest], Args)
    assert key(C(longest)) == table[longest] > key(C(shortest)) == table[shortest]
