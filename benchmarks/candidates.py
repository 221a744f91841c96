"""Sites among candidates: evplanner against the exact optimum (spopt), and at scale.

Run:  .venv/bin/python benchmarks/candidates.py                 # quality and time
      .venv/bin/python benchmarks/candidates.py --scale         # + 1M x 10,000 x 100
      .venv/bin/python benchmarks/candidates.py --scale-only --scale-n 200000

Instances (metres, the bundled data's UTM zone):

* ``real-<n>x150``: the bundled demand points (``real_demand``: census-tract
  demand, 1,767 points today) weighted by registered vehicles; 150 candidate
  sites.
* ``syn-1000x250`` and ``syn-2000x500``: synthetic demand points shaped like the
  bundled data (``synthesize_demand``, unit weights, seed 0); candidates.

Candidates are synthetic points of the same shape (another seed): places near
demand, as parcels or car parks would be. Every instance runs without and with
20 existing sites (bundled public stations inside the demand's bounding box,
drawn with a fixed seed).

For each: the **exact optimum** of the discrete weighted L1 p-median and of the
maximal covering problem (radius 5 km, L1) from PySAL spopt ``PMedian`` and
``MCLP`` (``from_cost_matrix``, existing sites as predefined facilities, p = new +
existing), solved by HiGHS through PuLP when available, else CBC; the solver's
status must be optimal. Against it, evplanner ``KMedians(k, candidates=...)``
and ``MaxCoverage(k, radius, candidates)`` with default settings, in memory
(best of 3 timed runs after a warm-up). Both objectives are recomputed from the
chosen sites by the same function. spopt's time is model build + solve (it
also needs the dense cost matrix, built outside the timing).

spopt's p-median is a dense model of n x m assignment variables; beyond
``--exact-max-pmedian`` of them it is not attempted (HiGHS found no integer
solution of the 250,000-variable syn-1000x250 model in 600 s). Every p-median
also gets a **certified lower bound**, the Lagrangian relaxation of the
assignment constraints (:func:`pmedian_lower_bound`, a few seconds); where
spopt has no proven optimum, evplanner's ratio is taken against that bound,
which can only overstate its gap.

Targets: p-median at most 0.5% above the optimum, coverage at least 99% of
it, evplanner at least 50x faster.

``--scale``: 1,000,000 synthetic demand points x 10,000 candidates x 100 new
sites, ``KMedians(candidates=...)`` on a Dask ``LocalCluster`` (2 workers x 1
thread, 10 chunks), then ``MaxCoverage`` on the same; wall time, passes, the
client's peak RSS and the workers' peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from functools import partial

import numpy as np
from _common import (
    OUT_DIR,
    PeakRSS,
    load_average,
    mib,
    print_environment,
    real_demand,
    save_json,
    synthetic_xy_m,
    to_xy_m,
)

RADIUS_M = 5_000.0
N_FIXED = 20
CACHE = OUT_DIR / "candidates_cache.json"


# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------


def _stations_xy(crs, lo, hi, n, seed):
    from evplanner.data import load_stations

    stations, _ = load_stations()
    S = to_xy_m(stations, crs)
    inside = np.all((S >= lo) & (S <= hi), axis=1)
    S = np.unique(S[inside], axis=0)
    pick = np.random.default_rng(seed).choice(S.shape[0], n, replace=False)
    return S[np.sort(pick)]


def instances():
    demand, crs = real_demand()
    out = []
    X = to_xy_m(demand, crs)
    w = demand["weight"].to_numpy("float64")
    out.append((f"real-{X.shape[0]}x150", X, w, synthetic_xy_m(150, seed=11)[0], 10))
    for n, m, k in ((1000, 250, 10), (2000, 500, 20)):
        X, w = synthetic_xy_m(n, seed=0)
        out.append((f"syn-{n}x{m}", X, w, synthetic_xy_m(m, seed=12)[0], k))
    full = []
    for name, X, w, C, k in out:
        F = _stations_xy(crs, X.min(axis=0), X.max(axis=0), N_FIXED, seed=3)
        full.append((name, X, w, C, np.empty((0, 2)), k))
        full.append((name + "+20", X, w, C, F, k))
    return full


# ---------------------------------------------------------------------------
# Objectives (the same function judges every solution)
# ---------------------------------------------------------------------------


def l1_to_sites(X, sites):
    return np.abs(X[:, None, :] - sites[None, :, :]).sum(axis=2).min(axis=1)


def pmedian_cost(X, w, sites):
    return float(np.dot(w, l1_to_sites(X, sites)))


def covered(X, w, sites, radius):
    return float(w[l1_to_sites(X, sites) <= radius].sum())


def judge(kind, X, w, sites):
    if kind == "pmedian":
        return pmedian_cost(X, w, sites)
    return covered(X, w, sites, RADIUS_M)


# ---------------------------------------------------------------------------
# Exact optimum: spopt + HiGHS (or CBC)
# ---------------------------------------------------------------------------


def _solver(time_limit_s):
    import pulp

    if "HiGHS" in pulp.listSolvers(onlyAvailable=True):
        return "HiGHS", pulp.HiGHS(msg=False, timeLimit=time_limit_s)
    return "CBC", pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)


def exact(kind, X, w, C, F, k, time_limit_s, use_cache=True):
    """Optimal chosen candidate indices by spopt; (indices, seconds, proven)."""
    import pulp
    from spopt.locate import MCLP, PMedian

    sites = np.vstack([C, F])
    key = hashlib.sha256(
        X.tobytes() + w.tobytes() + sites.tobytes() + f"{kind}{k}{RADIUS_M}".encode()
    ).hexdigest()[:16]
    cache = json.loads(CACHE.read_text()) if use_cache and CACHE.exists() else {}
    if key in cache:
        hit = cache[key]
        return (np.asarray(hit["idx"]), hit["seconds"], hit["solver"], True,
                hit.get("bound"))  # fmt: skip
    cost = np.abs(X[:, None, :] - sites[None, :, :]).sum(axis=2)
    predefined = np.arange(C.shape[0], sites.shape[0]) if F.shape[0] else None
    name, solver = _solver(time_limit_s)
    start = time.perf_counter()
    if kind == "pmedian":
        model = PMedian.from_cost_matrix(
            cost,
            w,
            p_facilities=k + F.shape[0],
            predefined_facilities_arr=predefined,
        )
    else:
        model = MCLP.from_cost_matrix(
            cost,
            w,
            service_radius=RADIUS_M,
            p_facilities=k + F.shape[0],
            predefined_facilities_arr=predefined,
        )
    try:
        model.solve(solver)
        proven = (
            pulp.LpStatus[model.problem.status] == "Optimal"
            and model.problem.sol_status == 1
        )
    except RuntimeError:
        # spopt raises when the solver stops at the time limit.
        proven = False
    seconds = time.perf_counter() - start
    bound = None
    if name == "HiGHS":
        # The solver's dual bound: a lower (p-median) or upper (coverage)
        # bound of the optimum, so ratios against it bound ours.
        bound = float(model.problem.solverModel.getInfo().mip_dual_bound)
    values = [v.value() for v in model.fac_vars]
    if any(v is None for v in values):
        idx = None
    else:
        opened = np.flatnonzero(np.asarray(values) > 0.5)
        idx = opened[opened < C.shape[0]]
        if idx.shape[0] != k:
            idx = None  # no integer solution yet
    if proven:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
        cache[key] = {"idx": idx.tolist(), "seconds": seconds, "solver": name,
                      "bound": bound}  # fmt: skip
        CACHE.write_text(json.dumps(cache))
    return idx, seconds, name, proven, bound


# ---------------------------------------------------------------------------
# A certified lower bound of the p-median: Lagrangian relaxation
# ---------------------------------------------------------------------------


def pmedian_lower_bound(X, w, C, F, k, upper, max_iter=5000):
    """Lower bound of the p-median optimum, from its Lagrangian relaxation.

    The p-median (assign every point once, x_ij <= y_j, k candidates open,
    existing sites open) with the assignment constraints relaxed by
    multipliers u_i has the value

        L(u) = sum_i u_i + sum of the k smallest rho_j
               + sum_i min(0, w_i dfix_i - u_i),
        rho_j = sum_i min(0, w_i d_ij - u_i),

    with dfix_i the distance to the nearest existing site (the only one a
    point is ever assigned to among them). L(u) <= optimum for every u; the
    subgradient method (Polyak steps towards ``upper``, a known solution's
    cost, halved when stalled) raises it towards the LP relaxation's value.
    Only ``upper``'s speed of convergence depends on it, not the bound's
    validity.

    Returns
    -------
    bound : float
        The best L(u) found (weighted L1, units of w x metres).
    seconds : float
    iterations : int
    """
    start = time.perf_counter()
    cost = w[:, None] * np.abs(X[:, None, :] - C[None, :, :]).sum(axis=2)
    if F.shape[0]:
        cfix = w * l1_to_sites(X, F)
    else:
        cfix = np.full(X.shape[0], np.inf)
    u = np.minimum(np.sort(cost, axis=1)[:, min(k, cost.shape[1] - 1)], cfix)
    best, step, stall, it = -np.inf, 2.0, 0, 0
    while it < max_iter:
        it += 1
        rho = np.minimum(cost - u[:, None], 0.0).sum(axis=0)
        sel = np.argpartition(rho, k - 1)[:k]
        value = u.sum() + rho[sel].sum() + np.minimum(cfix - u, 0.0).sum()
        improved = not np.isfinite(best) or value > best * (1 + 1e-9)
        best = max(best, value)
        if improved:
            stall = 0
        else:
            stall += 1
            if stall >= 30:
                step, stall = step / 2, 0
        # Subgradient: 1 - times point i is served in the relaxed solution.
        g = 1.0 - (cost[:, sel] < u[:, None]).sum(axis=1) - (cfix < u)
        gg = float(g @ g)
        if gg == 0 or step < 1e-6:
            break  # gg == 0: the relaxed solution is feasible, hence optimal
        u = u + step * max(upper - value, 0.0) / gg * g
    return float(best), time.perf_counter() - start, it


# ---------------------------------------------------------------------------
# evplanner
# ---------------------------------------------------------------------------


def ev_pmedian(X, w, C, F, k, n_init="auto"):
    from evplanner import KMedians

    km = KMedians(
        k,
        candidates=C,
        fixed_centers=F if F.shape[0] else None,
        n_init=n_init,
        random_state=0,
    ).fit(X, sample_weight=w)
    return km.center_indices_


def ev_coverage(X, w, C, F, k):
    from evplanner import MaxCoverage

    mc = MaxCoverage(
        k, RADIUS_M, C, fixed_centers=F if F.shape[0] else None, random_state=0
    ).fit(X, sample_weight=w)
    return mc.center_indices_


def best_time(func, repeat=3):
    func()  # warm-up (numba compile on a fresh cache)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - start)
    return out, min(times)


def quality(args):
    rows = []
    for name, X, w, C, F, k in instances():
        if args.instances and name not in args.instances:
            continue
        print(
            f"\n## {name}: {X.shape[0]} demand x {C.shape[0]} candidates, "
            f"{F.shape[0]} existing, k = {k}  (load {load_average()})"
        )
        for kind, ev in (("pmedian", ev_pmedian), ("coverage", ev_coverage)):
            if kind not in args.kinds:
                continue
            attempt = kind == "coverage" or (
                X.shape[0] * C.shape[0] <= args.exact_max_pmedian
            )
            if attempt:
                idx_opt, t_opt, solver, proven, bound = exact(
                    kind, X, w, C, F, k, args.time_limit, not args.no_cache
                )
            else:
                idx_opt, t_opt, solver, proven, bound = None, None, "-", False, None
            extra = {"n_init": args.pmedian_n_init} if kind == "pmedian" else {}
            idx_ev, t_ev = best_time(partial(ev, X, w, C, F, k, **extra))
            assert np.isin(idx_ev, np.arange(C.shape[0])).all()
            assert np.unique(idx_ev).shape[0] == k
            v_ev = judge(kind, X, w, np.vstack([C[idx_ev], F]))
            v_opt = (
                judge(kind, X, w, np.vstack([C[idx_opt], F]))
                if idx_opt is not None
                else None
            )
            lagr = lagr_s = None
            if kind == "pmedian":
                lagr, lagr_s, lagr_it = pmedian_lower_bound(X, w, C, F, k, v_ev)
                assert v_opt is None or not proven or lagr <= v_opt * (1 + 1e-9)
                if not proven or bound is None or lagr > bound:
                    bound = lagr
            # Proven: against the optimum. Else against the best bound (the
            # solver's or the Lagrangian one), which can only make evplanner
            # look worse.
            ref = v_opt if proven else bound
            usable = ref is not None and np.isfinite(ref) and ref > 0
            ratio = v_ev / ref if usable else float("nan")
            speed = t_opt / t_ev if attempt else float("nan")
            if proven:
                what = f"optimum {v_opt:,.1f} in {t_opt:.1f} s"
            elif attempt:
                best = "none" if v_opt is None else f"{v_opt:,.1f}"
                what = f"stopped at the limit (best {best}) in {t_opt:.1f} s"
            else:
                what = "not attempted (--exact-max-pmedian)"
            print(
                f"{kind:<9s} spopt+{solver} {what} | evplanner {v_ev:,.1f} in "
                f"{t_ev:.3f} s | ratio {ratio:.5f} | "
                + (f"{speed:,.0f}x faster" if attempt else "no exact time")
            )
            if lagr is not None:
                print(f"          Lagrangian bound {lagr:,.1f} ({lagr_it} "
                      f"iterations, {lagr_s:.1f} s): evplanner / bound "
                      f"{v_ev / lagr:.5f}")  # fmt: skip
            rows.append({"instance": name, "kind": kind, "n": X.shape[0],
                         "m": C.shape[0], "fixed": F.shape[0], "k": k,
                         "solver": solver, "proven": proven, "bound": bound,
                         "lagrangian": lagr, "lagrangian_s": lagr_s,
                         "optimum": v_opt, "evplanner": v_ev, "ratio": ratio,
                         "exact_s": t_opt, "evplanner_s": t_ev,
                         "speedup": speed, "load": load_average()})  # fmt: skip
    print("\n## Targets")
    for kind, target, worst_of, ok in (
        ("pmedian", "<= 1.005", max, lambda v: v <= 1.005),
        ("coverage", ">= 0.99", min, lambda v: v >= 0.99),
    ):
        ratios = [r["ratio"] for r in rows if r["kind"] == kind]
        known = [v for v in ratios if np.isfinite(v)]
        if not known:
            continue
        worst = worst_of(known)
        note = "" if len(known) == len(ratios) else " (some without a bound)"
        print(f"{kind} worst ratio {worst:.5f} ({target}): "
              f"{'MET' if ok(worst) else 'MISSED'}{note}")  # fmt: skip
    speeds = [r["speedup"] for r in rows if np.isfinite(r["speedup"])]
    if speeds:
        slowest = min(speeds)
        print(
            f"smallest speed-up {slowest:,.0f}x (>= 50x): "
            f"{'MET' if slowest >= 50 else 'MISSED'}"
        )
    unproven = [r["instance"] + "/" + r["kind"] for r in rows if not r["proven"]]
    if unproven:
        print(f"not proven optimal by spopt (ratios against the best lower "
              f"bound; spopt's time, when attempted, a lower bound of its "
              f"time to the optimum): {unproven}")  # fmt: skip
    return rows


def coverage_paths(args):
    """MaxCoverage on stored pairs against the pass-based search, same process."""
    from evplanner import _discrete

    print("\n## MaxCoverage: stored pairs against passes (in memory)")
    for name, X, w, C, F, k in instances():
        if args.instances and name not in args.instances:
            continue
        fit = partial(ev_coverage, X, w, C, F, k)
        stored, t_stored = best_time(fit)
        budget = _discrete.COVERAGE_PAIRS_BYTES
        _discrete.COVERAGE_PAIRS_BYTES = 0  # no room for the pairs: passes
        try:
            passes, t_passes = best_time(fit)
        finally:
            _discrete.COVERAGE_PAIRS_BYTES = budget
        same = np.array_equal(stored, passes)
        print(f"{name:<18s} stored pairs {t_stored:.4f} s | passes "
              f"{t_passes:.4f} s | {t_passes / t_stored:.0f}x | same sites "
              f"{same} | load {load_average()}")  # fmt: skip


# ---------------------------------------------------------------------------
# Scale run
# ---------------------------------------------------------------------------


def _worker_peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(args):
    import os

    import dask.array as da
    from distributed import Client, LocalCluster

    from evplanner import KMedians, MaxCoverage

    n, m, k = args.scale_n, args.scale_m, args.scale_k
    print(
        f"\n## Scale: {n:,} demand x {m:,} candidates x {k} new sites "
        f"(load {load_average()})"
    )
    X, w = synthetic_xy_m(n, seed=0)
    C = synthetic_xy_m(m, seed=12)[0]
    os.environ["NUMBA_NUM_THREADS"] = "1"
    out = {"n": n, "m": m, "k": k}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        chunk = -(-n // 10)
        Xd = da.from_array(X, chunks=(chunk, 2)).persist()
        wd = da.from_array(w, chunks=(chunk,)).persist()
        del X, w
        for label, make in (
            ("KMedians(candidates)", lambda: KMedians(k, candidates=C, random_state=0)),
            ("MaxCoverage", lambda: MaxCoverage(k, RADIUS_M, C, random_state=0)),
        ):
            with PeakRSS() as rss:
                start = time.perf_counter()
                model = make().fit(Xd, sample_weight=wd)
                seconds = time.perf_counter() - start
            workers = client.run(_worker_peak_mib)
            value = (
                model.inertia_ if hasattr(model, "inertia_") else model.covered_weight_
            )
            print(f"{label:<22s} {seconds:8.1f} s, {model.n_iter_} swaps, "
                  f"objective {value:.6e}; client peak RSS "
                  f"{mib(rss.peak_self):,.0f} MiB (baseline "
                  f"{mib(rss.baseline_self):,.0f}); workers' peak RSS "
                  f"{', '.join(f'{v:,.0f}' for v in workers.values())} MiB "
                  f"(load {load_average()})")  # fmt: skip
            out[label] = {"seconds": seconds, "swaps": model.n_iter_,
                          "objective": value,
                          "client_peak_mib": mib(rss.peak_self),
                          "client_baseline_mib": mib(rss.baseline_self),
                          "worker_peak_mib": list(workers.values())}  # fmt: skip
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600,
        help="seconds per exact solve (a safety net)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="re-solve the exact optima"
    )
    parser.add_argument(
        "--exact-max-pmedian",
        type=int,
        default=300_000,
        help="largest demand x candidates for which spopt's p-median is tried "
        "(larger ones only get the Lagrangian bound)",
    )
    parser.add_argument(
        "--instances",
        nargs="*",
        default=None,
        help="instance names to run (default: all)",
    )
    parser.add_argument(
        "--kinds",
        nargs="*",
        default=["pmedian", "coverage"],
        choices=["pmedian", "coverage"],
    )
    parser.add_argument(
        "--pmedian-n-init",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="KMedians n_init for the p-median (default 'auto': one run)",
    )
    parser.add_argument(
        "--coverage-paths",
        action="store_true",
        help="also time MaxCoverage on stored pairs against the pass-based search",
    )
    parser.add_argument("--scale", action="store_true", help="also the scale run")
    parser.add_argument("--scale-only", action="store_true")
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    parser.add_argument("--scale-m", type=int, default=10_000)
    parser.add_argument("--scale-k", type=int, default=100)
    args = parser.parse_args(argv)
    print_environment()
    print(f"load average before: {load_average()}")
    payload = {"args": vars(args)}
    if not args.scale_only:
        payload["rows"] = quality(args)
    if args.coverage_paths and not args.scale_only:
        coverage_paths(args)
    if args.scale or args.scale_only:
        payload["scale"] = scale(args)
    print(f"load average after: {load_average()}")
    save_json("candidates", payload)


if __name__ == "__main__":
    main()
