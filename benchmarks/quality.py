"""Solution quality of K-Medians on small instances against the exact p-median optimum.

Run:  .venv/bin/python benchmarks/quality.py [--seeds 5] [--no-cache]

Instances (coordinates in metres, EPSG:32610):

* ``real-300``: 300 of the bundled demand locations (ZIP-code centroids) drawn at
  random with a fixed seed, weighted by vehicles registered there (93,006 in all).
* ``real-150-unit``: 150 of those 300 locations with unit weights (CBC needs
  far longer to prove optimality with unit weights: over 20 minutes for 300
  points and k = 3 on the shared 2-core machine, so this instance is smaller).
* ``clustered+outliers``: 294 points in 6 tight clusters (normal scatter, 2 km per
  axis) inside a 120 km square, plus 6 far outliers 150-400 km away; unit weights.

For k in {3, 5, 10} the script reports the weighted L1 objective of

* the exact p-median optimum: PySAL spopt ``PMedian`` with the demand points as the
  candidate sites and the L1 cost matrix, solved by CBC through pulp (status must
  be "Optimal"; ``--cbc-limit`` seconds caps each solve as a safety net, and a
  solve that hits it is reported as "not proven optimal", never as the optimum).
  Its sites are demand points; K-Medians may put a site anywhere,
  so it can come out *below* this optimum (ratios under 1 are possible);
* evplanner ``KMedians`` with default settings (``n_init="auto"``: a few
  k-medians++ starts, counted and printed by the script; local search on) and
  with ``n_init=10``; and without the local search (Lloyd + restarts only: 1,
  the default number and 10 starts), to show what the swap step buys;
* pyclustering ``kmedians`` (Manhattan metric), started from pyclustering's own
  k-means++ initialiser, with the same numbers of restarts (default and 10), the best
  restart kept by the L1 objective; both its pure-Python implementation
  (``ccore=False``, the reference algorithm) and its C++ core (``ccore=True``,
  the default), because the two differ (see the README). pyclustering is
  unweighted: on ``real-300`` the points are expanded by repetition (an integer
  weight ``w`` becomes ``w`` copies: 93,006 rows), which leaves the weighted
  objective unchanged; the pure-Python mode is too slow for that (about 5 s per
  iteration) and runs on the unit-weight instances only.

Every randomised method runs with ``--seeds`` different seeds; the table shows the
mean and the worst objective relative to the p-median optimum. Targets: evplanner
within 2% of the optimum, and no worse than pyclustering (its better mode).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np
from _common import (
    OUT_DIR,
    l1_objective,
    load_average,
    print_environment,
    real_demand,
    save_json,
    to_xy_m,
)

KS = (3, 5, 10)
CACHE = OUT_DIR / "pmedian_cache.json"


# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------


def instance_real(n: int = 300, seed: int = 0):
    demand, crs = real_demand()
    X = to_xy_m(demand, crs)
    w = demand["weight"].to_numpy("float64")
    idx = np.sort(np.random.default_rng(seed).choice(len(X), n, replace=False))
    return X[idx], w[idx]


def instance_clustered(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres_m = rng.uniform(0, 120_000, size=(6, 2))
    X = np.vstack([rng.normal(c, 2_000, size=(49, 2)) for c in centres_m])
    angle = rng.uniform(0, 2 * np.pi, size=6)
    radius_m = rng.uniform(150_000, 400_000, size=6)
    outliers = 60_000 + radius_m[:, None] * np.column_stack(
        [np.cos(angle), np.sin(angle)]
    )
    X = np.ascontiguousarray(np.vstack([X, outliers]))
    return X, np.ones(X.shape[0])


# ---------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------


def pmedian_optimum(X, w, k, *, use_cache=True, time_limit_s=None):
    """Exact p-median (candidate sites = demand points) by spopt + CBC.

    Returns
    -------
    objective : float
        Weighted L1 cost of the CBC solution (recomputed from its sites).
    sites : np.ndarray
        Indices of the chosen demand points.
    seconds : float
        Model build + solve time.
    proven : bool
        Whether CBC proved the solution optimal (False if it hit the limit).
    cached : bool
    """
    import pulp
    from spopt.locate import PMedian

    cost = np.abs(X[:, None, :] - X[None, :, :]).sum(axis=2)
    key = hashlib.sha256(cost.tobytes() + w.tobytes() + str(k).encode()).hexdigest()[
        :16
    ]
    cache = json.loads(CACHE.read_text()) if use_cache and CACHE.exists() else {}
    if key in cache and cache[key].get("proven", True):
        hit = cache[key]
        return (hit["objective"], np.asarray(hit["sites"]), hit["seconds"], True,
                True)  # fmt: skip
    start = time.perf_counter()
    model = PMedian.from_cost_matrix(cost, w, p_facilities=k)
    solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)
    model = model.solve(solver)
    seconds = time.perf_counter() - start
    problem = model.problem
    # sol_status separates a proven optimum (1) from a feasible solution found
    # before the time limit (2); status alone says "Optimal" for both.
    if problem.sol_status not in (1, 2):
        raise RuntimeError(
            f"CBC found no solution for k={k}: {pulp.LpSolution[problem.sol_status]}"
        )
    proven = problem.sol_status == 1
    sites = np.array([j for j, v in enumerate(model.fac_vars) if v.value() > 0.5])
    objective = float(np.dot(w, cost[:, sites].min(axis=1)))
    reported = float(pulp.value(problem.objective))
    if not np.isclose(objective, reported, rtol=1e-9):
        raise RuntimeError(f"objective mismatch: {objective} vs CBC's {reported}")
    if use_cache and proven:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        cache[key] = {"objective": objective, "sites": sites.tolist(),
                      "seconds": seconds, "proven": True}  # fmt: skip
        CACHE.write_text(json.dumps(cache, indent=1))
    return objective, sites, seconds, proven, False


def evplanner_objective(X, w, k, seed, *, n_init, local_search):
    from evplanner.kmedians import KMedians

    model = KMedians(n_clusters=k, n_init=n_init, local_search=local_search,
                     random_state=seed).fit(X, sample_weight=w)  # fmt: skip
    objective = l1_objective(X, w, model.cluster_centers_)
    # The estimator's own objective must be the one we recompute.
    if not np.isclose(objective, model.inertia_, rtol=1e-9):
        raise RuntimeError(f"inertia_ {model.inertia_} != recomputed {objective}")
    return objective


def _numpy2_shim():
    """pyclustering 0.10.1.2 calls ``numpy.warnings`` (removed in NumPy 2.0) in
    its k-means++ initialiser; point it at the standard ``warnings`` module."""
    import warnings

    if not hasattr(np, "warnings"):
        np.warnings = warnings


def pyclustering_objective(X, w, k, seed, *, restarts, ccore):
    """Best of ``restarts`` pyclustering kmedians runs, judged by the L1 objective."""
    from pyclustering.cluster.center_initializer import kmeans_plusplus_initializer
    from pyclustering.cluster.kmedians import kmedians
    from pyclustering.utils.metric import distance_metric, type_metric

    _numpy2_shim()
    if not ccore and not np.all(w == 1.0):
        return None  # pure Python on the expanded rows: far too slow
    counts = np.rint(w).astype(np.int64)
    if not np.allclose(counts, w):
        raise ValueError("repetition needs integer weights")
    data = np.repeat(X, counts, axis=0).tolist()
    metric = distance_metric(type_metric.MANHATTAN)
    best = np.inf
    for restart in range(restarts):
        init = kmeans_plusplus_initializer(
            data, k, random_state=seed * 1000 + restart
        ).initialize()
        run = kmedians(data, init, metric=metric, ccore=ccore).process()
        best = min(best, l1_objective(X, w, np.asarray(run.get_medians())))
    return best


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def default_runs() -> int:
    """How many starts ``KMedians`` makes with ``n_init="auto"`` (k-medians++).

    Counted from the core's "run N: objective" log records of one default fit,
    so the pyclustering comparison gets the same number of restarts whatever
    the core's default is.
    """
    import logging

    from evplanner.kmedians import KMedians

    runs = []

    class Count(logging.Handler):
        def emit(self, record):
            if str(record.msg).startswith("run "):
                runs.append(record)

    core_log = logging.getLogger("evplanner.kmedians")
    handler = Count(logging.INFO)
    old_level = core_log.level
    core_log.addHandler(handler)
    core_log.setLevel(logging.INFO)
    try:
        X = np.random.default_rng(0).normal(size=(50, 2))
        KMedians(n_clusters=3, random_state=0).fit(X)
    finally:
        core_log.removeHandler(handler)
        core_log.setLevel(old_level)
    return len(runs)


def methods(n_default: int) -> list:
    """(key, label, function(X, w, k, seed)) for every method compared."""

    def ev(n_init, local_search):
        return lambda X, w, k, s: evplanner_objective(
            X, w, k, s, n_init=n_init, local_search=local_search
        )

    def pyc(restarts, ccore):
        return lambda X, w, k, s: pyclustering_objective(
            X, w, k, s, restarts=restarts, ccore=ccore
        )

    d = n_default
    return [
        ("ev_default", f"evplanner default ({d} starts + swaps)", ev("auto", True)),
        ("ev_n10", "evplanner n_init=10 (+ swaps)", ev(10, True)),
        ("lloyd_1", "evplanner Lloyd only, 1 start", ev(1, False)),
        ("lloyd_d", f"evplanner Lloyd only, {d} starts", ev("auto", False)),
        ("lloyd_10", "evplanner Lloyd only, 10 starts", ev(10, False)),
        ("pyc_d", f"pyclustering, {d} starts (Python)", pyc(d, False)),
        ("pyc_10", "pyclustering, 10 starts (Python)", pyc(10, False)),
        ("pycc_d", f"pyclustering, {d} starts (C++ core)", pyc(d, True)),
        ("pycc_10", "pyclustering, 10 starts (C++ core)", pyc(10, True)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per randomised method (mean and worst shown)",
    )
    parser.add_argument(
        "--cbc-limit",
        type=float,
        default=600.0,
        help="seconds per CBC solve before giving up on a proof",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="re-solve the p-median optima even if cached",
    )
    args = parser.parse_args(argv)

    print("# Solution quality: weighted L1 objective / exact p-median optimum")
    print_environment()
    print(f"load average: {load_average()}")
    n_default = default_runs()
    print(f"KMedians n_init='auto' makes {n_default} k-medians++ starts")
    METHODS = methods(n_default)  # noqa: N806
    X_real, w_real = instance_real()
    instances = {
        "real-300": (X_real, w_real),
        "real-150-unit": (X_real[::2], np.ones(X_real[::2].shape[0])),
        "clustered+outliers": instance_clustered(),
    }
    rows = []
    for name, (X, w) in instances.items():
        print(f"\n## {name}: {X.shape[0]} points, total weight {w.sum():,.0f}")
        for k in KS:
            opt, sites, seconds, proven, cached = pmedian_optimum(
                X, w, k, use_cache=not args.no_cache, time_limit_s=args.cbc_limit
            )
            how = "cached" if cached else "solved"
            what = "p-median optimum" if proven else "CBC best (NOT proven optimal)"
            print(f"k={k:<3d} {what} {opt:,.0f} m "
                  f"(CBC {seconds:.0f} s, {how})")  # fmt: skip
            row = {"instance": name, "k": k, "optimum": opt, "proven": proven,
                   "optimum_seconds": seconds}  # fmt: skip
            for key, label, func in METHODS:
                start = time.perf_counter()
                objs = [func(X, w, k, s) for s in range(args.seeds)]
                if any(o is None for o in objs):
                    print(f"      {label:<38s} n/a (weighted instance)")
                    continue
                objs = np.array(objs)
                per_seed_s = (time.perf_counter() - start) / args.seeds
                ratio = objs / opt
                row[key] = {"objectives": objs.tolist(), "mean": ratio.mean(),
                            "worst": ratio.max(), "best": ratio.min(),
                            "seconds_per_seed": per_seed_s}  # fmt: skip
                print(f"      {label:<38s} mean {ratio.mean():.4f}  "
                      f"worst {ratio.max():.4f}  best {ratio.min():.4f}  "
                      f"({per_seed_s:.2f} s/seed)")  # fmt: skip
            rows.append(row)

    print("\n## Targets")
    worst = {key: max(r[key]["worst"] for r in rows if key in r)
             for key, _, _ in METHODS}  # fmt: skip
    for key in ("ev_default", "ev_n10", "lloyd_1", "lloyd_d", "lloyd_10"):
        verdict = "MET" if worst[key] <= 1.02 else "MISSED"
        print(f"{key}: worst ratio {worst[key]:.4f} -> within 2% of optimum: {verdict}")
    for ev, pycs in (("ev_default", ("pyc_d", "pycc_d")),
                     ("ev_n10", ("pyc_10", "pycc_10"))):  # fmt: skip
        for pyc in pycs:
            # Per instance, k and seed: evplanner's objective <= pyclustering's.
            runs = [
                (r["instance"], r["k"], s, a, b)
                for r in rows
                if pyc in r
                for s, (a, b) in enumerate(
                    zip(r[ev]["objectives"], r[pyc]["objectives"], strict=True)
                )
            ]
            losses = [(i, k, s) for i, k, s, a, b in runs if a > b * (1 + 1e-9)]
            verdict = (
                "MET"
                if not losses
                else f"MISSED in {len(losses)} of {len(runs)} runs {losses}"
            )
            print(f"{ev} no worse than {pyc} (same seeds): {verdict}")
    save_json("quality", {"args": vars(args), "n_default": n_default, "rows": rows})


if __name__ == "__main__":
    main()
