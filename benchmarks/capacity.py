"""Capacitated K-Medians: quality and time against exact solvers, WA, and 1M on Dask.

Run:  .venv/bin/python benchmarks/capacity.py                  # (a) (b) (c)
      .venv/bin/python benchmarks/capacity.py --scale          # + (d) 1M on Dask
      .venv/bin/python benchmarks/capacity.py --only wa --scale

(a) **Quality** on instances small enough to solve exactly: the capacitated
    p-median with splittable demand (every new site at most ``capacity``, fixed
    sites at most their own capacity) and candidate sites = the demand points,
    as a mixed-integer programme (PuLP, HiGHS; formulation in
    :func:`exact_splittable`). K-Medians may put a site anywhere, so the
    continuous optimum is at most this one: the ratio evplanner / exact is
    ``<= 1`` at best; the target is at most 1.02 on every instance.
(b) **Time** against PySAL spopt ``PMedian.from_cost_matrix(...,
    facility_capacities=...)`` on the same instances (HiGHS through PuLP). Note
    spopt's capacitated p-median assigns each demand point to one site (binary
    assignment), a different (harder, never cheaper) problem: its objective is
    printed alongside.
(c) **WA**: the tract demand (vehicles at their 2020 census tract's centre of
    population, ``evplanner.planning.load_demand``) with today's 2,473 bundled
    public stations fixed, with capacities from their ports, plus 50 new sites of
    ``NEW_SITE_VEHICLES`` each: time, objective, how many stations would be
    overloaded by nearest-station assignment, against the uncapacitated fit in
    the same process.
(d) ``--scale``: 1,000,000 vehicles at the tract locations (drawn in proportion
    to the tract demand, one row per vehicle), the same sites, as a Dask array
    on a ``LocalCluster`` (2 workers x 1 thread, 10 chunks) against the same fit
    in memory: same objective and sites, time and memory.

Vehicles per port (a benchmark assumption, not a product default): Level 1 5,
Level 2 25, DC fast 150 vehicles per port, rounded down from the ratios of
NREL's 2030 National Charging Network study (2023: 33 million EVs with
1,067,000 public Level 2 and 182,000 public DC fast ports, i.e. 31 and 181 EVs
per port) because both port types serve the same vehicles here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np
from _common import (
    OUT_DIR,
    PeakRSS,
    load_average,
    mib,
    print_environment,
    save_json,
    synthetic_xy_m,
)

VEHICLES_PER_PORT = {"level1_ports": 5, "level2_ports": 25, "dc_fast_ports": 150}
NEW_SITE_VEHICLES = 1_000.0
N_NEW_WA = 50
CACHE = OUT_DIR / "capacity_cache.json"


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def wa_instance():
    """Tract demand (metres), the bundled stations (metres) and their capacities."""
    from evplanner.planning import Scenario, load_demand, load_existing

    scenario = Scenario(new_sites=N_NEW_WA, demand_at="tract", existing="public")
    demand = load_demand(scenario)
    existing = load_existing(scenario)
    S = existing.metres(demand.crs)
    st = existing.stations
    caps = sum(
        st[col].to_numpy("float64") * per for col, per in VEHICLES_PER_PORT.items()
    )
    X = np.asarray(demand.X, dtype=np.float64)
    w = np.asarray(demand.weight, dtype=np.float64)
    return X, w, S, np.asarray(caps, dtype=np.float64)


def small_instances():
    """(name, X, w, F, fixed caps, k, capacity): exact solves take seconds."""
    X, w, S, caps_s = wa_instance()
    rng = np.random.default_rng(7)
    out = []
    # Tracts of one region (the nearest 120 to a random tract), weighted.
    for label, seed_tract, k, slack in (("A", 11, 5, 1.15), ("B", 900, 8, 1.1)):
        d = np.abs(X - X[seed_tract]).sum(axis=1)
        idx = np.sort(np.argsort(d, kind="stable")[:120])
        Xi, wi = X[idx], w[idx]
        cap = float(np.ceil(slack * wi.sum() / k))
        out.append((f"tracts120-{label}-k{k}", Xi, wi, np.empty((0, 2)),
                    np.empty(0), k, cap))  # fmt: skip
        # + the 10 stations nearest the region's centre, 30% of their
        # port capacity (so that they bind), new sites sized to close the gap.
        c = np.median(Xi, axis=0)
        near = np.argsort(np.abs(S - c).sum(axis=1), kind="stable")[:10]
        F, cf = S[near], 0.3 * caps_s[near]
        cap_f = float(np.ceil(slack * max(wi.sum() - cf.sum(), wi.sum() / 2) / k))
        out.append((f"tracts120-{label}-k{k}+10", Xi, wi, F, cf, k, cap_f))
    # Synthetic points, unit weights.
    Xs, ws = synthetic_xy_m(150, seed=3)
    out.append(("syn150-k6", Xs, ws, np.empty((0, 2)), np.empty(0), 6,
                float(np.ceil(1.1 * 150 / 6))))  # fmt: skip
    del rng
    return out


# ---------------------------------------------------------------------------
# Exact references
# ---------------------------------------------------------------------------


def l1(A, B):
    return np.abs(A[:, None, :] - B[None, :, :]).sum(axis=2)


def exact_splittable(X, w, F, cf, k, cap, time_limit):
    """Optimal capacitated p-median with splittable demand, sites at demand points.

    min sum_ij w_i d_ij z_ij  s.t.  sum_j z_ij = 1,  z_ij <= y_j,
    sum_i w_i z_ij <= cap y_j (candidates), <= cf_j (fixed, always open),
    sum_j y_j = k,  y binary,  0 <= z <= 1.

    Returns (objective, seconds, proven, status).
    """
    import pulp

    n, nf = X.shape[0], F.shape[0]
    D = l1(X, np.vstack([X, F]))
    prob = pulp.LpProblem("cpm", pulp.LpMinimize)
    y = [pulp.LpVariable(f"y{j}", cat="Binary") for j in range(n)]
    z = [[pulp.LpVariable(f"z{i}_{j}", 0, 1) for j in range(n + nf)] for i in range(n)]
    prob += pulp.lpSum(w[i] * D[i, j] * z[i][j] for i in range(n)
                       for j in range(n + nf))  # fmt: skip
    for i in range(n):
        prob += pulp.lpSum(z[i]) == 1
        for j in range(n):
            prob += z[i][j] <= y[j]
    for j in range(n):
        prob += pulp.lpSum(w[i] * z[i][j] for i in range(n)) <= cap * y[j]
    for j in range(nf):
        prob += pulp.lpSum(w[i] * z[i][n + j] for i in range(n)) <= cf[j]
    prob += pulp.lpSum(y) == k
    start = time.perf_counter()
    prob.solve(pulp.HiGHS(msg=False, timeLimit=time_limit))
    seconds = time.perf_counter() - start
    proven = pulp.LpStatus[prob.status] == "Optimal" and prob.sol_status == 1
    status = f"{pulp.LpStatus[prob.status]}, {pulp.LpSolution[prob.sol_status]}"
    return float(pulp.value(prob.objective)), seconds, proven, status


def spopt_single_source(X, w, F, cf, k, cap, time_limit):
    """spopt's capacitated PMedian (binary assignment): (objective, seconds, status)."""
    import pulp
    from spopt.locate import PMedian

    n, nf = X.shape[0], F.shape[0]
    cost = l1(X, np.vstack([X, F]))
    caps = np.concatenate([np.full(n, cap), cf])
    predefined = np.concatenate([np.zeros(n), np.ones(nf)]).astype(bool)
    start = time.perf_counter()
    model = PMedian.from_cost_matrix(
        cost, w, p_facilities=k + nf,
        predefined_facilities_arr=predefined if nf else None,
        facility_capacities=caps,
    )  # fmt: skip
    try:
        model.solve(pulp.HiGHS(msg=False, timeLimit=time_limit))
        # sol_status 1 = proven optimal; 2 = a feasible solution at the limit.
        status = (f"{pulp.LpStatus[model.problem.status]}, "
                  f"{pulp.LpSolution[model.problem.sol_status]}")  # fmt: skip
        value = float(pulp.value(model.problem.objective))
    except (RuntimeError, pulp.PulpError, TypeError) as exc:
        # spopt raises when the solver stops without a solution.
        status, value = f"failed: {type(exc).__name__}", float("nan")
    return value, time.perf_counter() - start, status


def cached(key_parts, func):
    key = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes()
                                  if isinstance(p, np.ndarray) else str(p).encode()
                                  for p in key_parts)).hexdigest()[:16]  # fmt: skip
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if key in cache:
        return cache[key], True
    out = func()
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    cache[key] = out
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cache))
    return out, False


# ---------------------------------------------------------------------------
# evplanner
# ---------------------------------------------------------------------------


def ev_fit(X, w, F, cf, k, cap, **kw):
    from evplanner import KMedians

    return KMedians(
        k,
        fixed_centers=F if F.shape[0] else None,
        fixed_capacity=cf if F.shape[0] else None,
        capacity=cap,
        random_state=0,
        **kw,
    ).fit(X, sample_weight=w)


def check_fit(km, X, w, cap, cf):
    """The three invariants the tests assert, re-checked on every benchmark fit."""
    caps = np.concatenate([np.full(km.n_clusters, cap), cf])
    loads = np.asarray(km.flows_.sum(axis=0)).ravel()
    over = float(np.max((loads - caps) / np.maximum(caps, 1e-300)))
    rows = np.abs(np.asarray(km.flows_.sum(axis=1)).ravel() - w).max()
    D = km.transform(X)
    coo = km.flows_.tocoo()
    inertia = float(np.dot(coo.data, D[coo.row, coo.col]))
    assert over <= 1e-6, over
    assert rows <= 1e-9 * w.max(), rows
    assert abs(inertia - km.inertia_) <= 1e-9 * km.inertia_, (inertia, km.inertia_)


def quality(args):
    rows = []
    for name, X, w, F, cf, k, cap in small_instances():
        print(f"\n## {name}: {X.shape[0]} points, {F.shape[0]} fixed, k = {k}, "
              f"capacity {cap:,.0f}, total demand {w.sum():,.0f} "
              f"(load {load_average()})")  # fmt: skip
        (opt, t_opt, proven, status), hit = cached(
            ("split", X, w, F, cf, k, cap),
            lambda: exact_splittable(X, w, F, cf, k, cap, args.time_limit),  # noqa: B023
        )
        print(f"exact splittable (PuLP + HiGHS): {opt:,.1f} in {t_opt:.1f} s, "
              f"{status}{' (cached)' if hit else ''}")  # fmt: skip
        (v_sp, t_sp, st_sp), hit = cached(
            ("spopt2", X, w, F, cf, k, cap, args.spopt_limit),
            lambda: spopt_single_source(X, w, F, cf, k, cap, args.spopt_limit),  # noqa: B023
        )
        print(f"spopt PMedian, capacities (single source): {v_sp:,.1f} in "
              f"{t_sp:.1f} s, {st_sp}{' (cached)' if hit else ''}")  # fmt: skip
        ev_fit(X, w, F, cf, k, cap)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            km = ev_fit(X, w, F, cf, k, cap)
            times.append(time.perf_counter() - start)
        check_fit(km, X, w, cap, cf)
        t_ev = min(times)
        ratio = km.inertia_ / opt
        # The same model as the MILP: new sites among the demand points.
        start = time.perf_counter()
        kc = ev_fit(X, w, F, cf, k, cap, candidates=X)
        t_c = time.perf_counter() - start
        check_fit(kc, X, w, cap, cf)
        print(f"evplanner candidates=X: {kc.inertia_:,.1f} in {t_c:.3f} s | ratio "
              f"to exact {kc.inertia_ / opt:.5f}")  # fmt: skip
        print(f"evplanner: {km.inertia_:,.1f} in {t_ev:.3f} s | ratio to exact "
              f"{ratio:.5f} | {t_opt / t_ev:,.0f}x faster than the exact MILP, "
              f"{t_sp / t_ev:,.0f}x faster than spopt")  # fmt: skip
        rows.append({"instance": name, "n": X.shape[0], "fixed": F.shape[0],
                     "k": k, "capacity": cap, "exact": opt, "exact_s": t_opt,
                     "proven": proven, "spopt": v_sp, "spopt_s": t_sp,
                     "spopt_status": st_sp, "evplanner": km.inertia_,
                     "evplanner_s": t_ev, "ratio": ratio,
                     "candidates": kc.inertia_, "candidates_s": t_c,
                     "candidates_ratio": kc.inertia_ / opt,
                     "load": load_average()})  # fmt: skip
    worst = max(r["ratio"] for r in rows)
    print(
        f"\nworst ratio {worst:.5f} (<= 1.02): {'MET' if worst <= 1.02 else 'MISSED'}"
    )
    worst_c = max(r["candidates_ratio"] for r in rows)
    print(f"worst ratio with candidates = the demand points: {worst_c:.5f}")
    unproven = [r["instance"] for r in rows if not r["proven"]]
    if unproven:
        print(f"not proven optimal (ratio against the best found): {unproven}")
    return rows


def wa(args):
    from evplanner import KMedians

    X, w, S, caps = wa_instance()
    print(f"\n## WA: {X.shape[0]:,} tract points ({np.unique(X, axis=0).shape[0]:,} "
          f"distinct), {w.sum():,.0f} vehicles; {S.shape[0]:,} stations with "
          f"{caps.sum():,.0f} vehicles of capacity; {N_NEW_WA} new sites of "
          f"{NEW_SITE_VEHICLES:,.0f} (load {load_average()})")  # fmt: skip
    nearest = np.abs(X[:, None, :] - S[None, :, :]).sum(axis=2).argmin(axis=1)
    load_now = np.bincount(nearest, weights=w, minlength=S.shape[0])
    print(f"today, nearest station: {(load_now > caps).sum()} of {S.shape[0]} "
          f"stations over capacity, {np.maximum(load_now - caps, 0).sum():,.0f} "
          "vehicles above capacity")  # fmt: skip
    start = time.perf_counter()
    km0 = KMedians(N_NEW_WA, fixed_centers=S, random_state=0).fit(X, sample_weight=w)
    t0 = time.perf_counter() - start
    sites0 = np.vstack([km0.cluster_centers_, S])
    lab0 = np.abs(X[:, None, :] - sites0[None, :, :]).sum(axis=2).argmin(axis=1)
    load0 = np.bincount(lab0, weights=w, minlength=sites0.shape[0])
    caps_all = np.concatenate([np.full(N_NEW_WA, NEW_SITE_VEHICLES), caps])
    over0 = int((load0 > caps_all).sum())
    print(f"uncapacitated KMedians: {t0:.2f} s, objective {km0.inertia_:,.0f} "
          f"veh-m; nearest-site loads: {over0} sites over capacity "
          f"({int((load0[:N_NEW_WA] > NEW_SITE_VEHICLES).sum())} new), "
          f"{np.maximum(load0 - caps_all, 0).sum():,.0f} vehicles above")  # fmt: skip
    start = time.perf_counter()
    km = ev_fit(X, w, S, caps, N_NEW_WA, NEW_SITE_VEHICLES)
    t1 = time.perf_counter() - start
    check_fit(km, X, w, NEW_SITE_VEHICLES, caps)
    over = int((km.site_loads_ > caps_all * (1 + 1e-6)).sum())
    full = int((km.site_loads_ >= caps_all * (1 - 1e-9)).sum())
    split = int((np.diff(km.flows_.indptr) > 1).sum())
    ratio = km.inertia_ / km0.inertia_
    full_new = int((km.site_loads_[:N_NEW_WA] >= NEW_SITE_VEHICLES * (1 - 1e-9)).sum())
    print(f"capacitated KMedians: {t1:.2f} s ({t1 / t0:.2f}x the uncapacitated "
          f"fit), objective {km.inertia_:,.0f} veh-m ({ratio:.3f}x "
          f"the uncapacitated), {over} sites over capacity, {full} at capacity "
          f"({full_new} new), {split} tracts split over sites, "
          f"{km.n_iter_} location updates, "
          f"max price {km.capacity_prices_.max():,.0f} m/vehicle")  # fmt: skip
    # The search from the uncapacitated start alone (what the fit did before the
    # capacity-aware second start), in the same process, for the ratios.
    from evplanner import _capacitated as cap
    from evplanner import k_medians

    U, W, _ = cap.aggregate_points(X, w)
    start = time.perf_counter()
    s0 = k_medians(X, N_NEW_WA, sample_weight=w, fixed_centers=S, random_state=0)
    one = cap.capacitated_search(U, W, s0.centers, S, caps_all, n_trials=30)
    t_one = time.perf_counter() - start
    load_one = np.bincount(one.transport.cols, weights=one.transport.flow,
                           minlength=caps_all.shape[0])  # fmt: skip
    full_one = int((load_one[:N_NEW_WA] >= NEW_SITE_VEHICLES * (1 - 1e-9)).sum())
    print(f"uncapacitated start only: {t_one:.2f} s, objective "
          f"{one.transport.objective:,.0f} veh-m, {full_one} new sites at capacity; "
          f"the fit with both starts: {km.inertia_ / one.transport.objective:.4f}x "
          f"the objective in {t1 / t_one:.2f}x the time")  # fmt: skip
    return {"n": X.shape[0], "vehicles": float(w.sum()), "stations": S.shape[0],
            "one_start_s": t_one, "one_start_objective": one.transport.objective,
            "one_start_full_new": full_one, "full_new": full_new,
            "station_capacity": float(caps.sum()),
            "overloaded_today": int((load_now > caps).sum()),
            "uncap_s": t0, "uncap_objective": km0.inertia_, "uncap_over": over0,
            "cap_s": t1, "cap_objective": km.inertia_, "cap_over": over,
            "at_capacity": full, "split_points": split, "n_iter": km.n_iter_,
            "load": load_average()}  # fmt: skip


def _worker_peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(args):
    import os

    import dask.array as da
    from distributed import Client, LocalCluster

    X, w, S, caps = wa_instance()
    n = args.scale_n
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(X.shape[0], size=n, p=w / w.sum()))
    Xn = np.ascontiguousarray(X[pick])
    wn = np.ones(n)
    # Capacities scaled with the demand, so that the same stations bind.
    f = n / w.sum()
    caps_n, cap_n = caps * f, NEW_SITE_VEHICLES * f
    print(f"\n## Scale: {n:,} vehicles at {np.unique(Xn, axis=0).shape[0]:,} tract "
          f"locations, {S.shape[0]:,} stations + {N_NEW_WA} new sites, capacities "
          f"x{f:.2f} (load {load_average()})")  # fmt: skip
    with PeakRSS() as rss:
        start = time.perf_counter()
        km_mem = ev_fit(Xn, wn, S, caps_n, N_NEW_WA, cap_n)
        t_mem = time.perf_counter() - start
    print(f"in memory: {t_mem:.1f} s, objective {km_mem.inertia_:.9e}, peak RSS "
          f"{mib(rss.peak_self):,.0f} MiB (baseline "
          f"{mib(rss.baseline_self):,.0f})")  # fmt: skip
    os.environ["NUMBA_NUM_THREADS"] = "1"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        chunk = -(-n // 10)
        Xd = da.from_array(Xn, chunks=(chunk, 2)).persist()
        wd = da.from_array(wn, chunks=(chunk,)).persist()
        with PeakRSS() as rss:
            start = time.perf_counter()
            km = ev_fit(Xd, wd, S, caps_n, N_NEW_WA, cap_n)
            t_dask = time.perf_counter() - start
        workers = client.run(_worker_peak_mib)
        labels_equal = bool(np.array_equal(km.labels_.compute(), km_mem.labels_))
    same_sites = bool(np.array_equal(km.cluster_centers_, km_mem.cluster_centers_))
    rel = abs(km.inertia_ - km_mem.inertia_) / km_mem.inertia_
    flows_equal = (km.flows_ != km_mem.flows_).nnz == 0
    print(f"Dask LocalCluster: {t_dask:.1f} s ({t_dask / t_mem:.2f}x in memory), "
          f"objective {km.inertia_:.9e} (relative difference {rel:.1e}), same "
          f"sites: {same_sites}, same labels: {labels_equal}, same flows: "
          f"{flows_equal}; client peak RSS {mib(rss.peak_self):,.0f} MiB (baseline "
          f"{mib(rss.baseline_self):,.0f}), workers' peak RSS "
          f"{', '.join(f'{v:,.0f}' for v in workers.values())} MiB "
          f"(load {load_average()})")  # fmt: skip
    return {"n": n, "mem_s": t_mem, "dask_s": t_dask, "objective": km.inertia_,
            "rel_diff": rel, "same_sites": same_sites, "same_labels": labels_equal,
            "same_flows": flows_equal}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600,
        help="seconds for each exact (splittable) solve",
    )
    parser.add_argument("--spopt-limit", type=float, default=120,
                        help="seconds for each spopt solve")  # fmt: skip
    parser.add_argument("--only", nargs="*", default=["quality", "wa"],
                        choices=["quality", "wa"])  # fmt: skip
    parser.add_argument("--scale", action="store_true", help="also (d), 1M on Dask")
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print_environment()
    print(f"load average before: {load_average()}")
    payload = {"args": vars(args)}
    if "quality" in args.only:
        payload["quality"] = quality(args)
    if "wa" in args.only:
        payload["wa"] = wa(args)
    if args.scale:
        payload["scale"] = scale(args)
    print(f"load average after: {load_average()}")
    save_json("capacity", payload)


if __name__ == "__main__":
    main()
