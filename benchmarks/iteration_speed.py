"""One K-Medians iteration on 1,000,000 points, k = 100, against its peers.

Run:  .venv/bin/python benchmarks/iteration_speed.py [--n 1000000] [--k 100]

What one iteration is, for every contender: assign every point to its nearest centre,
then move every centre (K-Medians: to the exact per-coordinate weighted median of its
points; K-Means: to the weighted mean). All start from the same ``k`` centres (points
drawn with a fixed seed) on the same synthetic points in metres (EPSG:32610) with unit
weights.

Contenders (the quick ones timed ``--repeat`` times in round-robin order after one
untimed warm-up round, which also compiles the numba kernels):

* evplanner ``KMedians(init=array, n_init=1, max_iter=1, local_search=False).fit``
  against scikit-learn ``KMeans(init=array, n_init=1, max_iter=1,
  algorithm="lloyd").fit``: the target. Both whole calls are timed, nothing is
  subtracted: each validates its input, assigns, updates once and assigns again
  (evplanner: the first assignment, one median update, the assignment to the new
  centres, whose labels are the final ones; scikit-learn: one Lloyd step, then a
  final relabelling pass).
* one full iteration from evplanner's kernels (``assign_l1``: complete
  nearest-centre search; ``cluster_lower_medians``: exact weighted medians)
  against scikit-learn's own single Lloyd step (``lloyd_iter_chunked_dense``,
  private): exactly one assignment + update each, nothing else.
* ``--iters`` iterations (default 10, ``tol=0`` for both, no early stop): the two
  ``fit`` calls again, and evplanner's per-iteration wall time inside that fit,
  read from the timestamps of the core's ``iteration N`` debug log records
  (iterations 2..N). In memory, evplanner carries Hamerly-style bounds from one
  assignment to the next, so later iterations cost less than a full one;
  scikit-learn's Lloyd does a full assignment every time.
* the nearest-centre search alone (``assign_l1``), with its default search (cell
  filtering on a grid over the points, see ``evplanner._kernels``) and with the
  sorted-axis search it falls back to (forced by raising ``GRID_MIN_ROWS``), for
  the ``k`` centres and for ``--many-k`` centres (default 2,500, about the 2,473
  bundled existing stations; drawn from the points), where a 1-D search is weakest.
* a straightforward NumPy K-Medians iteration (written below): broadcast
  ``|x - c|`` summed over coordinates (an ``n x k`` matrix), ``argmin``, then a
  boolean mask per cluster and a sort-based weighted median per coordinate;
  compared with the full kernel iteration, and checked to give the same labels
  and centres.
* the original project's per-point Python loop (a Python ``for`` over points, L1 to
  each centre in Python, then a median per cluster), timed on a random subsample of
  ``--loop-n`` points and extrapolated linearly to ``n`` (the loop is O(n k)).

The ratios printed at the end are best-of-repeat against best-of-repeat.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from _common import (
    Timing,
    load_average,
    print_environment,
    save_json,
    synthetic_xy_m,
    time_interleaved,
    time_it,
)

# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


def numpy_kmedians_iteration(X, w, centers):
    """Straightforward NumPy K-Medians iteration (the reference, not the product).

    Materialises the ``n x k`` L1 distance matrix, takes its argmin, then loops over
    clusters with a boolean mask of the full array and takes a sort-based lower
    weighted median per coordinate (the same definition as the core's: the
    smallest value whose cumulative weight reaches half the cluster's weight).
    """
    dist = np.abs(X[:, None, :] - centers[None, :, :]).sum(axis=2)
    labels = dist.argmin(axis=1)
    new = centers.copy()
    for j in range(centers.shape[0]):
        mask = labels == j
        wj = w[mask]
        total = wj.sum()
        if total <= 0:
            continue  # left in place; the benchmark data has no empty cluster
        for c in range(X.shape[1]):
            vals = X[mask, c]
            order = np.argsort(vals, kind="stable")
            cum = np.cumsum(wj[order])
            new[j, c] = vals[order][np.searchsorted(cum, 0.5 * total)]
    return new, labels


def python_loop_iteration(points, weights, centers):
    """The original project's approach: a Python loop over points and centres.

    ``points`` and ``centers`` are lists of ``[x, y]`` Python floats. Assignment is
    a per-point loop computing the L1 distance to every centre; the update takes
    each cluster's weighted lower median per coordinate with ``sorted``.
    """
    k = len(centers)
    members = [[] for _ in range(k)]
    for index, (x, y) in enumerate(points):
        best = float("inf")
        best_j = 0
        for j, (cx, cy) in enumerate(centers):
            d = abs(x - cx) + abs(y - cy)
            if d < best:
                best = d
                best_j = j
        members[best_j].append(index)
    new = []
    for j in range(k):
        if not members[j]:
            new.append(list(centers[j]))
            continue
        half = 0.5 * sum(weights[i] for i in members[j])
        centre = []
        for c in range(2):
            acc = 0.0
            for i in sorted(members[j], key=lambda i, c=c: points[i][c]):
                acc += weights[i]
                if acc >= half:
                    centre.append(points[i][c])
                    break
        new.append(centre)
    return new


# ---------------------------------------------------------------------------
# evplanner
# ---------------------------------------------------------------------------


def kernels_iteration(X, w, k):
    """One full iteration from the core's kernels: ``assign_l1`` (complete
    nearest-centre search) then ``cluster_lower_medians`` (exact weighted
    medians). This is the iteration without any bounds carried over from the
    previous one: the same work as the NumPy reference and the Python loop."""
    from evplanner import _kernels

    def step(centers):
        labels, _ = _kernels.assign_l1(X, centers)
        medians, _ = _kernels.cluster_lower_medians(X, w, labels, k, k)
        return medians, labels

    return step


def assign_search(X, centers, search):
    """``assign_l1`` with its default search (``"auto"``) or the sorted axis forced."""
    from evplanner import _kernels

    def run():
        saved = _kernels.GRID_MIN_ROWS
        if search == "sorted":
            _kernels.GRID_MIN_ROWS = 2**62
        try:
            return _kernels.assign_l1(X, centers)
        finally:
            _kernels.GRID_MIN_ROWS = saved

    return run


def kmedians_fit(X, w, centers, max_iter):
    """Public estimator: one run from ``centers``, ``max_iter`` Lloyd iterations
    (``tol=0``, so it never stops early), no local search. The whole ``fit``
    call is timed: input checks, the first assignment, the iterations (the
    last assignment gives the final labels)."""
    from evplanner.kmedians import KMedians

    kwargs = {"n_clusters": centers.shape[0], "init": centers, "n_init": 1,
              "max_iter": max_iter, "tol": 0.0, "local_search": False}  # fmt: skip
    model = KMedians(**kwargs)
    return lambda: model.fit(X, sample_weight=w), kwargs


class IterationClock(logging.Handler):
    """Timestamps of the core's per-iteration debug records.

    ``evplanner.kmedians`` logs ``iteration N: objective ...`` right after the
    assignment that ends iteration N, so the gap between two records is the
    wall time of one whole iteration (median update, re-seeding, assignment)
    as the fit really runs it, bounds carried over included.
    """

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.stamps = []

    def emit(self, record):
        if str(record.msg).startswith("iteration"):
            self.stamps.append(time.perf_counter())

    def gaps(self):
        return np.diff(self.stamps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--iters", type=int, default=10, help="iterations for the multi-iteration fits"
    )
    parser.add_argument("--loop-n", type=int, default=10_000)
    parser.add_argument(
        "--many-k", type=int, default=2_500, help="centres for the many-sites search"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sklearn.cluster import KMeans
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    print(f"# One iteration, n = {args.n:,} synthetic points (metres), k = {args.k}")
    start = time.perf_counter()
    X, w = synthetic_xy_m(args.n, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    init = np.ascontiguousarray(X[rng.choice(args.n, args.k, replace=False)])
    many = np.ascontiguousarray(X[rng.choice(args.n, args.many_k, replace=False)])
    print(f"data        : {args.n:,} x {X.shape[1]} float64, unit weights, "
          f"{time.perf_counter() - start:.1f} s to synthesise and project")  # fmt: skip
    print(f"load average: {load_average()} (before)")

    kernels = kernels_iteration(X, w, args.k)
    fit_1, fit_kwargs = kmedians_fit(X, w, init, 1)
    fit_n, _ = kmedians_fit(X, w, init, args.iters)
    kmeans_1 = KMeans(n_clusters=args.k, init=init, n_init=1, max_iter=1,
                      algorithm="lloyd")  # fmt: skip
    kmeans_n = KMeans(n_clusters=args.k, init=init, n_init=1, max_iter=args.iters,
                      tol=0.0, algorithm="lloyd")  # fmt: skip
    n_threads = _openmp_effective_n_threads()
    centers_new = np.empty_like(init)
    weight_in = np.empty(args.k)
    labels_sk = np.empty(args.n, dtype=np.int32)
    shift = np.empty(args.k)

    def sklearn_step():
        lloyd_iter_chunked_dense(X, w, init, centers_new, weight_in, labels_sk,
                                 shift, n_threads)  # fmt: skip

    one = {
        "fit": ("evplanner KMedians.fit(max_iter=1)", fit_1),
        "sklearn_fit": ("scikit-learn KMeans.fit(max_iter=1)",
                        lambda: kmeans_1.fit(X, sample_weight=w)),
        "kernels": ("evplanner full iteration (kernels)", lambda: kernels(init)),
        "sklearn_step": ("scikit-learn Lloyd step (private)", sklearn_step),
        "assign": (f"assign_l1, k={args.k}, grid (default)",
                   assign_search(X, init, "auto")),
        "assign_sorted": (f"assign_l1, k={args.k}, sorted axis",
                          assign_search(X, init, "sorted")),
        "assign_many": (f"assign_l1, k={args.many_k}, grid (default)",
                        assign_search(X, many, "auto")),
        "assign_many_sorted": (f"assign_l1, k={args.many_k}, sorted axis",
                               assign_search(X, many, "sorted")),
    }  # fmt: skip
    # The warm-up round compiles the numba kernels (cached on disk after that).
    timed = time_interleaved({label: f for label, f in one.values()},
                             repeat=args.repeat)  # fmt: skip
    timings = {key: timed[label] for key, (label, _) in one.items()}

    clock = IterationClock()
    core_log = logging.getLogger("evplanner.kmedians")
    core_log.addHandler(clock)
    core_log.setLevel(logging.DEBUG)
    many = {
        "fit_n": (f"evplanner KMedians.fit(max_iter={args.iters})", fit_n),
        "sklearn_fit_n": (f"scikit-learn KMeans.fit(max_iter={args.iters})",
                          lambda: kmeans_n.fit(X, sample_weight=w)),
    }  # fmt: skip
    repeat_n = max(2, args.repeat // 2)
    timed = time_interleaved({label: f for label, f in many.values()},
                             repeat=repeat_n, warmup=0)  # fmt: skip
    timings.update({key: timed[label] for key, (label, _) in many.items()})
    core_log.removeHandler(clock)
    # One fit logs args.iters records; the gaps inside each fit are iterations
    # 2..iters (the first has no record before it).
    if len(clock.stamps) == repeat_n * args.iters:
        gaps = np.concatenate([
            np.diff(clock.stamps[i : i + args.iters])
            for i in range(0, len(clock.stamps), args.iters)
        ])  # fmt: skip
        timings["steady"] = Timing(
            f"evplanner iterations 2..{args.iters} in a fit", gaps.tolist()
        )
    else:
        # The core no longer logs one record per iteration as expected.
        print(f"per-iteration log records: expected {repeat_n * args.iters}, got "
              f"{len(clock.stamps)}; iterations 2..N not timed")  # fmt: skip

    print_environment()  # after the warm-up, so numba's threading layer is known
    print(f"sklearn     : {n_threads} OpenMP threads")
    shown = {k: v for k, v in fit_kwargs.items() if k != "init"}
    print(f"KMedians    : {shown}, init=<{args.k} x 2 array>")
    print()

    results = {}
    model = fit_1()
    core_centers, core_labels = kernels(init)
    results["fit_matches_kernels"] = bool(
        np.array_equal(model.cluster_centers_, core_centers)
    )
    kmeans_n.fit(X, sample_weight=w)
    model_n = fit_n()
    results["n_iter"] = {"evplanner": int(model_n.n_iter_),
                         "sklearn": int(kmeans_n.n_iter_)}  # fmt: skip
    print(f"KMedians.fit(max_iter=1) centres equal the kernels' iteration: "
          f"{results['fit_matches_kernels']}")  # fmt: skip
    print(f"iterations run with max_iter={args.iters}: {results['n_iter']}")
    sklearn_step()
    print(f"points assigned alike by L1 and by scikit-learn's L2 step: "
          f"{np.mean(labels_sk == core_labels):.1%}")  # fmt: skip

    numpy_repeat = max(2, min(args.repeat, 3))
    timings["numpy"] = time_it(
        "straightforward NumPy K-Medians",
        lambda: numpy_kmedians_iteration(X, w, init),
        repeat=numpy_repeat,
        warmup=0,
    )
    ref_centers, ref_labels = numpy_kmedians_iteration(X, w, init)
    agree_labels = bool(np.array_equal(ref_labels, core_labels))
    agree_centers = bool(np.array_equal(ref_centers, core_centers))
    print(f"NumPy reference agrees with evplanner: labels {agree_labels}, "
          f"centres {agree_centers}")  # fmt: skip
    results["numpy_agrees"] = agree_labels and agree_centers

    sub = rng.choice(args.n, min(args.loop_n, args.n), replace=False)
    points = X[sub].tolist()
    weights = w[sub].tolist()
    centres_list = init.tolist()
    loop = time_it(
        f"Python loop on {len(sub):,} points (measured)",
        lambda: python_loop_iteration(points, weights, centres_list),
        repeat=max(2, min(args.repeat, 3)),
        warmup=0,
    )
    scale = args.n / len(sub)
    timings["loop"] = Timing(
        f"Python loop x{scale:g} (extrapolated)", [s * scale for s in loop.seconds]
    )
    print(f"load average: {load_average()} (after)")

    print()
    print("## Timings (wall clock)")
    print(loop.line())
    for timing in timings.values():
        print(timing.line())
    print()
    print("## Ratios (best / best; > 1 means evplanner is faster)")
    ratios = {}
    for key, num, den, label in [
        ("sklearn_fit", "sklearn_fit", "fit",
         "KMeans.fit(max_iter=1) / KMedians.fit(max_iter=1)"),
        ("sklearn_step", "sklearn_step", "kernels",
         "sklearn Lloyd step / evplanner full iteration"),
        ("sklearn_fit_n", "sklearn_fit_n", "fit_n",
         f"KMeans.fit(max_iter={args.iters}) / KMedians.fit(max_iter={args.iters})"),
        ("sklearn_step_vs_steady", "sklearn_step", "steady",
         f"sklearn Lloyd step / evplanner iteration 2..{args.iters}"),
        ("step_share", "kernels", "sklearn_step",
         "evplanner full iteration / sklearn Lloyd step (time, < 1: faster)"),
        ("grid", "assign_sorted", "assign",
         f"assign_l1 k={args.k}: sorted axis / grid"),
        ("grid_many", "assign_many_sorted", "assign_many",
         f"assign_l1 k={args.many_k}: sorted axis / grid"),
        ("numpy", "numpy", "kernels", "straightforward NumPy / evplanner full iter."),
        ("loop", "loop", "kernels",
         f"Python loop (extrapolated from {len(sub):,}) / evplanner full iter."),
    ]:  # fmt: skip
        if num not in timings or den not in timings:
            continue
        ratios[key] = timings[num].best / timings[den].best
        print(f"{label:<64s} {ratios[key]:9.2f}x")
    if "step_share" in ratios:
        verdict = "MET" if ratios["step_share"] <= 0.6 else "MISSED"
        print(f"target 'full iteration takes at most 0.6x a Lloyd step': {verdict}")
    for key, label in [
        ("sklearn_fit", "fit(max_iter=1) vs KMeans.fit(max_iter=1)"),
        ("sklearn_step", "full iteration vs one Lloyd step"),
        ("sklearn_fit_n", f"fit(max_iter={args.iters}) vs KMeans"),
    ]:
        verdict = "MET" if ratios[key] >= 1.0 else "MISSED"
        print(f"target 'K-Medians no slower than K-Means', {label}: {verdict}")

    save_json("iteration_speed", {
        "args": vars(args),
        "timings": {k: t.seconds for k, t in timings.items()},
        "loop_subsample_seconds": loop.seconds, "ratios": ratios, **results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
