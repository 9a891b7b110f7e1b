"""Verdict logic of the berger2020 and dai2020 claims on hand-made outcomes.

The claims run end to end in miniature in test_claims.py; here their verdict functions
(``berger2020.ordering_parts``, ``dai2020.depth_parts``, ``dai2020.warmstart_parts``) get results built
by hand, so that each rule is seen to fail where it must: an ordering lost in one stuck restart, a
learned variance still falling (not judged, whatever the scores say), a deep autoencoder still
improving (not a plateau), an autoencoder error that never first decreases.
"""
import numpy as np

from refvae.experiments.collapse import DepthResult
from refvae.experiments.noise_modes import ModeResult, ThreeNoiseResult
from refvae.verify.claims import berger2020, dai2020
from refvae.verify.registry import Context, Outcome

T, C = 400, 5
MARKS = np.array([80, 160, 240, 320, 400])


def _flat(value, R):
    return np.full((T, R), value)


def _falling(start, end, R):
    """A variance still annealing at the end: geometric fall over the whole run."""
    return np.repeat(np.geomspace(start, end, T)[:, None], R, axis=1)


def _mode(label, elbo, trajectory):
    elbo = np.asarray(elbo, dtype=float)
    ckpt = np.repeat(elbo[None, :], C, axis=0)                       # flat: not still improving
    return ModeResult(label, elbo, np.full(elbo.shape, 0.005), trajectory[-1].copy(), trajectory, MARKS, ckpt)


def _three_noise(ls, lv, f01, ls_traj=None, lv_traj=None, others=-2.5, f_star=None):
    R = len(ls)
    modes = {f"F sigma={s:g}": _mode(f"F sigma={s:g}", np.full(R, others), _flat(s * s, R)) for s in (1.0, 0.5)}
    modes["F sigma=0.1"] = _mode("F sigma=0.1", f01, _flat(0.01, R))
    modes["LS"] = _mode("LS", ls, _flat(0.007, R) if ls_traj is None else ls_traj)
    modes["LV"] = _mode("LV", lv, _flat(0.02, R) if lv_traj is None else lv_traj)
    if f_star is not None:                  # F*-VAE fixed at LS-VAE's final variance, restart by restart
        modes["F*"] = _mode("F*", f_star, np.repeat(modes["LS"].sigma2[None, :], T, axis=0))
    return ThreeNoiseResult(modes, "F sigma=0.1", None if f_star is None else modes["LS"].sigma2, None, -0.9)


def _by_statement(parts):
    return {p.statement: p for p in parts}


F_STAR_LS = "F*-VAE (sigma fixed at LS-VAE's final value) is below LS-VAE"
F_STAR_F01 = "F*-VAE is below the F-VAE with sigma = 0.1"
REPLAY = "an F-VAE replaying LS-VAE's sigma2 trajectory reproduces LS-VAE's ELBO (App. A.2)"


def test_ordering_holds_restart_by_restart_when_settled():
    res = _three_noise(ls=[-1.40, -1.42, -1.38], lv=[-1.30, -1.31, -1.25], f01=[-1.55, -1.60, -1.57])
    parts, settled, change, improving, which_f = berger2020.ordering_parts(res, "quick")
    p = _by_statement(parts)
    assert p["LV-VAE beats LS-VAE"].holds is True and p["LS-VAE beats every F-VAE"].holds is True
    assert all(settled["LS"]) and all(settled["LV"]) and which_f == ["F sigma=0.1"] * 3
    # without F*-VAE and the replay those parts are not judged (holds None), so the verdict is partly
    # reproduced, never reproduced on a weaker statement
    for name in (F_STAR_LS, F_STAR_F01, REPLAY):
        assert p[name].holds is None and p[name].evidence.startswith("not run in the quick profile")
    assert Outcome(parts=parts).verdict == "partly reproduced"


def test_f_star_parts_are_judged_restart_by_restart():
    # F*-VAE below LS-VAE in every restart, but above F sigma=0.1 in restart 1: one part holds, one fails
    res = _three_noise(ls=[-1.40, -1.42, -1.38], lv=[-1.30, -1.31, -1.25], f01=[-1.55, -1.60, -1.57],
                       f_star=[-1.62, -1.52, -1.66])
    p = _by_statement(berger2020.ordering_parts(res, "quick")[0])
    assert p[F_STAR_LS].holds is True and "3 of 3 restarts won" in p[F_STAR_LS].evidence
    assert p[F_STAR_F01].holds is False and "2 of 3 restarts won" in p[F_STAR_F01].evidence
    assert "[0.0070, 0.0070, 0.0070]" in p[F_STAR_F01].evidence          # F*'s variance, per restart
    assert Outcome(parts=list(p.values())).verdict == "partly reproduced"
    # F*'s variance comes from LS-VAE: with LS-VAE still annealing, both F* parts are not judged
    res = _three_noise(ls=[-1.40, -1.42, -1.38], lv=[-1.30, -1.31, -1.25], f01=[-1.55, -1.60, -1.57],
                       f_star=[-1.62, -1.52, -1.66], ls_traj=_falling(0.05, 0.007, 3))
    p = _by_statement(berger2020.ordering_parts(res, "quick")[0])
    assert p[F_STAR_LS].holds is None and p[F_STAR_F01].holds is None
    assert "LS in restarts [0, 1, 2]" in p[F_STAR_F01].evidence and "2 of 3 restarts won" in p[F_STAR_F01].evidence


def test_one_stuck_restart_breaks_the_ordering():
    # LS-VAE stuck on its plateau in restart 2 (settled there, and below the best F-VAE): the means still
    # say LS > F (-1.52 vs -1.57), but with 3 restarts every restart must win
    res = _three_noise(ls=[-1.40, -1.38, -1.78], lv=[-1.30, -1.31, -1.25], f01=[-1.55, -1.60, -1.57])
    p = _by_statement(berger2020.ordering_parts(res, "quick")[0])
    assert np.mean([-1.40, -1.38, -1.78]) > np.mean([-1.55, -1.60, -1.57])
    part = p["LS-VAE beats every F-VAE"]
    assert part.holds is False and "2 of 3 restarts won" in part.evidence and "not judged" not in part.evidence
    assert p["LV-VAE beats LS-VAE"].holds is True
    assert Outcome(parts=list(p.values())).verdict == "partly reproduced"


def test_a_still_falling_variance_is_not_judged():
    # LS-VAE's variance still annealing (0.05 -> 0.007 over the run): every restart would win, yet the
    # parts that involve LS-VAE are not judged (holds None), with the provisional numbers
    res = _three_noise(ls=[-1.40, -1.42, -1.38], lv=[-1.30, -1.31, -1.25], f01=[-1.55, -1.60, -1.57],
                       ls_traj=_falling(0.05, 0.007, 3))
    parts, settled, change, _, _ = berger2020.ordering_parts(res, "quick")
    assert not any(settled["LS"]) and all(np.asarray(change["LS"]) < -0.05)
    for name in ("LV-VAE beats LS-VAE", "LS-VAE beats every F-VAE"):
        part = _by_statement(parts)[name]
        assert part.holds is None and "3 of 3 restarts won" in part.evidence
        assert part.evidence.startswith("variance still moving (LS in restarts [0, 1, 2]), so not judged")
    # nothing could be judged: neither reproduced nor refuted
    assert Outcome(parts=parts).verdict == "not judged"
    # a variance that moved early and then stayed put is settled
    early = np.concatenate([np.geomspace(0.05, 0.007, T // 2), np.full(T - T // 2, 0.007)])
    res.modes["LS"] = _mode("LS", [-1.40, -1.42, -1.38], np.repeat(early[:, None], 3, axis=1))
    assert _by_statement(berger2020.ordering_parts(res, "quick")[0])["LS-VAE beats every F-VAE"].holds is True


def test_a_noisy_but_flat_lv_variance_is_settled_and_a_stuck_lv_loses():
    # stuck high with minibatch noise, over a quick-length run (12000 steps: windows of 1200 steps)
    noisy = 0.4 * np.exp(0.2 * np.random.default_rng(0).standard_normal((12000, 3)))
    res = _three_noise(ls=[-1.40, -1.42, -1.38], lv=[-1.75, -1.31, -1.25], f01=[-1.55, -1.60, -1.57],
                       lv_traj=noisy)
    parts, settled, _, _, _ = berger2020.ordering_parts(res, "quick")
    assert all(settled["LV"])
    part = _by_statement(parts)["LV-VAE beats LS-VAE"]
    assert part.holds is False and "2 of 3 restarts won" in part.evidence
    assert "LV-VAE's mean s2(z) per restart [0.4" in part.evidence       # the reason: LV-VAE stuck high


def test_quick_schedule_settles_within_one_rate_and_trains_f_star():
    # the settled rule compares the last two tenths of training: the quick schedule keeps both inside its
    # last stage, so a drop of s2 caused by a change of learning rate cannot pass for (or hide) settling
    T_total = sum(n for _, n in berger2020.QUICK_SCHEDULE)
    assert berger2020.QUICK_SCHEDULE[-1][1] >= 0.2 * T_total
    cfg = berger2020._three_noise_settings(Context(profile="quick"))
    assert cfg["schedule"] == berger2020.QUICK_SCHEDULE and "F*" in cfg["modes"]


def _depth_result(ae, vae, ae_trace_last=None):
    """DepthResult with given final errors (D, R); the trace is flat unless ``ae_trace_last`` (C, R) is given
    for the deepest AE."""
    ae, vae = np.asarray(ae, float), np.asarray(vae, float)
    D, R = ae.shape
    trace = {"ae": np.repeat(ae[:, None, :], C, axis=1), "vae": np.repeat(vae[:, None, :], C, axis=1)}
    if ae_trace_last is not None:
        trace["ae"][-1] = ae_trace_last
        assert np.allclose(ae_trace_last[-1], ae[-1])
    zeros = np.zeros((D, R))
    return DepthResult(depths=(1, 2, 8)[:D], kinds=("ae", "vae"), errors={"ae": ae, "vae": vae},
                       error_trace=trace, checkpoints=tuple(MARKS), active_units={"vae": zeros.astype(int)},
                       sigma_near_one={"vae": zeros}, sigma2={"vae": zeros}, data_variance=0.56, latent_dim=8,
                       width=32, steps=400)


def test_depth_all_parts_hold_on_a_plateau():
    ae = [[0.086, 0.086, 0.085], [0.083, 0.081, 0.084], [0.17, 0.17, 0.19]]
    vae = [[0.15, 0.14, 0.15], [0.21, 0.20, 0.22], [0.52, 0.56, 0.56]]
    parts, best, improving, fall = dai2020.depth_parts(_depth_result(ae, vae))
    assert best == 1 and not improving.any() and np.allclose(fall, 0.0)
    assert all(p.holds for p in parts) and Outcome(parts=parts).verdict == "reproduced"


def test_depth_still_improving_deep_ae_is_not_a_plateau():
    ae = [[0.086, 0.086, 0.085], [0.083, 0.081, 0.084], [0.17, 0.17, 0.19]]
    vae = [[0.15, 0.14, 0.15], [0.21, 0.20, 0.22], [0.52, 0.56, 0.56]]
    falling = np.array([[0.30, 0.29, 0.31], [0.25, 0.24, 0.27], [0.21, 0.20, 0.23], [0.19, 0.185, 0.21],
                        [0.17, 0.17, 0.19]])
    parts, best, improving, fall = dai2020.depth_parts(_depth_result(ae, vae, falling))
    assert improving[-1].all() and not improving[:-1].any()
    p = _by_statement(parts)
    plateau = p["the deep AE's higher error is a plateau (a bad stationary point), not slower training"]
    assert not plateau.holds and "still improving in 3 of 3" in plateau.evidence
    assert p["then increases once the networks are too deep"].holds
    assert Outcome(parts=parts).verdict == "partly reproduced"


def test_depth_error_that_never_first_decreases():
    ae = [[0.083, 0.081, 0.084], [0.086, 0.086, 0.085], [0.17, 0.17, 0.19]]     # best at the shallowest
    vae = [[0.15, 0.14, 0.15], [0.21, 0.20, 0.22], [0.52, 0.56, 0.56]]
    parts, best, _, _ = dai2020.depth_parts(_depth_result(ae, vae))
    p = _by_statement(parts)
    assert best == 0
    first = p["the AE's error first decreases with depth (capacity)"]
    assert not first.holds and "lowest at the shallowest depth 1" in first.evidence
    # "then increases" is then judged against the shallowest depth, where it still holds
    assert p["then increases once the networks are too deep"].holds
    # and a VAE below the AE in one restart at one depth breaks "always worse"
    vae[1][2] = 0.08
    assert not _by_statement(dai2020.depth_parts(_depth_result(ae, vae))[0])[
        "the VAE's reconstruction error is always worse than the AE's"].holds


def test_warmstart_parts_restart_by_restart():
    res = _depth_result([[0.083, 0.081, 0.084], [0.17, 0.17, 0.19]], [[0.21, 0.20, 0.22], [0.52, 0.56, 0.56]])
    res.kinds = ("ae", "vae", "vae_warm")
    res.errors["vae_warm"] = np.array([[0.17, 0.16, 0.18], [0.38, 0.37, 0.60]])   # no help in restart 2
    parts, helps = dai2020.warmstart_parts(res)
    assert helps.wins == 2 and not parts[0].holds and parts[1].holds
    res.errors["vae_warm"][1, 2] = 0.40
    parts, helps = dai2020.warmstart_parts(res)
    assert all(p.holds for p in parts)
    res.errors["vae_warm"][0, 0] = 0.08                                          # below the AE once
    assert not dai2020.warmstart_parts(res)[0][1].holds
