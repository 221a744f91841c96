"""One K-Medians iteration on 1,000,000 points, k = 100, against its peers.

Run:  .venv/bin/python benchmarks/iteration_speed.py [--n 1000000] [--k 100]

What one iteration is, for every contender: assign every point to its nearest centre,
then move every centre (K-Medians: to the exact per-coordinate weighted median of its
points; K-Means: to the weighted mean). All start from the same ``k`` centres (points
drawn with a fixed seed) on the same synthetic points in metres (EPSG:32610) with unit
weights.

Contenders, each timed ``--repeat`` times after one untimed warm-up run:

* evplanner, one iteration through the core: the per-iteration step of
  :mod:`evplanner.kmedians` if it exposes one, else the two kernels it is built on
  (``assign_l1`` + ``cluster_lower_medians``); the script prints which.
* evplanner ``KMedians(init=array, n_init=1, max_iter=1).fit`` - the public
  estimator, which also validates the input and computes the final objective
  (no subtraction: the whole call is timed).
* scikit-learn ``KMeans(init=array, n_init=1, max_iter=1, algorithm="lloyd").fit``,
  the target (whole call timed; it too validates and ends with a relabelling pass),
  and scikit-learn's own single Lloyd step (``lloyd_iter_chunked_dense``, private),
  which is exactly one assignment + mean update.
* a straightforward NumPy K-Medians iteration (written below): broadcast
  ``|x - c|`` summed over coordinates (an ``n x k`` matrix), ``argmin``, then a
  boolean mask per cluster and a sort-based weighted median per coordinate.
* the original project's per-point Python loop (a Python ``for`` over points, L1 to
  each centre in Python, then a median per cluster), timed on a random subsample of
  ``--loop-n`` points and extrapolated linearly to ``n`` (the loop is O(n k)).

The ratios printed at the end are best-of-repeat against best-of-repeat.
"""

from __future__ import annotations

import argparse
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


def core_iteration(X, w, k):
    """One Lloyd iteration exactly as :func:`evplanner.kmedians.k_medians` runs it.

    Inside ``_lloyd`` an iteration is ``engine.medians(state)`` (exact weighted
    medians of the current clusters) followed by ``engine.assign(new_centres)``
    (L1 assignment, objective and the most costly points for re-seeding). Timed
    here as assign-then-median from the given centres, on the in-memory engine.
    ``_NumpyEngine`` is private; it is used because the module has no public
    one-iteration function.
    """
    from evplanner.kmedians import _NumpyEngine

    # r = rows kept for re-seeding, as k_medians sets it (k + n_swap_candidates).
    engine = _NumpyEngine(X, w, k, min(X.shape[0], k + 100))

    def step(centers):
        state = engine.assign(centers)
        medians, _ = engine.medians(state)
        return medians, state.extra["labels"]

    return step, "kmedians._NumpyEngine.assign + .medians"


def kernels_iteration(X, w, k):
    """The two kernels alone: ``assign_l1`` then ``cluster_lower_medians``."""
    from evplanner import _kernels

    def step(centers):
        labels, _ = _kernels.assign_l1(X, centers)
        medians, _ = _kernels.cluster_lower_medians(X, w, labels, k, k)
        return medians, labels

    return step


def kmedians_fit_one(X, w, centers):
    """Public estimator: one Lloyd iteration, one run, no local search.

    The whole ``fit`` call is timed: input checks, the first assignment, one
    median update, the assignment to the new centres and the final labels.
    """
    from evplanner.kmedians import KMedians

    kwargs = {"n_clusters": centers.shape[0], "init": centers, "n_init": 1,
              "max_iter": 1, "local_search": False}  # fmt: skip
    model = KMedians(**kwargs)
    return lambda: model.fit(X, sample_weight=w), kwargs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--loop-n", type=int, default=10_000)
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
    print(f"data        : {args.n:,} x {X.shape[1]} float64, unit weights, "
          f"{time.perf_counter() - start:.1f} s to synthesise and project")  # fmt: skip
    print(f"load average: {load_average()} (before)")

    step, step_name = core_iteration(X, w, args.k)
    kernels = kernels_iteration(X, w, args.k)
    fit_one, fit_kwargs = kmedians_fit_one(X, w, init)
    kmeans = KMeans(n_clusters=args.k, init=init, n_init=1, max_iter=1,
                    algorithm="lloyd")  # fmt: skip
    n_threads = _openmp_effective_n_threads()
    centers_new = np.empty_like(init)
    weight_in = np.empty(args.k)
    labels_sk = np.empty(args.n, dtype=np.int32)
    shift = np.empty(args.k)

    def sklearn_step():
        lloyd_iter_chunked_dense(X, w, init, centers_new, weight_in, labels_sk,
                                 shift, n_threads)  # fmt: skip

    contenders = {
        "core": (f"evplanner iteration ({step_name})", lambda: step(init)),
        "kernels": ("evplanner kernels assign_l1 + medians", lambda: kernels(init)),
        "fit": ("evplanner KMedians.fit(max_iter=1)", fit_one),
        "sklearn_step": ("scikit-learn Lloyd step (private)", sklearn_step),
        "sklearn_fit": ("scikit-learn KMeans.fit(max_iter=1)",
                        lambda: kmeans.fit(X, sample_weight=w)),
    }  # fmt: skip
    # The warm-up round compiles the numba kernels (cached on disk after that).
    timed = time_interleaved({label: f for label, f in contenders.values()},
                             repeat=args.repeat)  # fmt: skip
    timings = {key: timed[label] for key, (label, _) in contenders.items()}

    print_environment()  # after the warm-up, so numba's threading layer is known
    print(f"sklearn     : {n_threads} OpenMP threads")
    shown = {k: v for k, v in fit_kwargs.items() if k != "init"}
    print(f"KMedians    : {shown}, init=<{args.k} x 2 array>")
    print()

    results = {}
    core_centers, core_labels = step(init)
    model = fit_one()
    results["fit_matches_step"] = bool(
        np.array_equal(model.cluster_centers_, core_centers)
    )
    kmeans_step_labels = labels_sk.astype(np.int64)
    print(f"KMedians.fit centres equal the iteration's: {results['fit_matches_step']}")

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
    # Same assignment rule, different arithmetic (K-Means uses squared L2):
    # just say how far apart the two are, as a sanity check on the inputs.
    print(f"points assigned alike by L1 and by scikit-learn's L2 step: "
          f"{np.mean(kmeans_step_labels == core_labels):.1%}")  # fmt: skip

    sub = rng.choice(args.n, min(args.loop_n, args.n), replace=False)
    points = X[sub].tolist()
    weights = w[sub].tolist()
    centres_list = init.tolist()
    loop = time_it(
        f"Python loop on {len(sub):,} points",
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
    print("## Timings (wall clock per iteration)")
    print(loop.line(note="  <- measured"))
    for timing in timings.values():
        print(timing.line())
    print()
    print("## Ratios (best / best; > 1 means evplanner is faster)")
    ratios = {}
    for key, num, den, label in [
        ("sklearn_step", "sklearn_step", "core",
         "scikit-learn Lloyd step / evplanner iteration"),
        ("sklearn_fit", "sklearn_fit", "fit",
         "scikit-learn KMeans.fit / evplanner KMedians.fit (max_iter=1)"),
        ("numpy", "numpy", "core", "straightforward NumPy / evplanner iteration"),
        ("loop", "loop", "core",
         f"Python loop (extrapolated from {len(sub):,}) / evplanner iteration"),
    ]:  # fmt: skip
        ratios[key] = timings[num].best / timings[den].best
        print(f"{label:<64s} {ratios[key]:9.2f}x")
    for key, label in [("sklearn_step", "one iteration vs one Lloyd step"),
                       ("sklearn_fit", "fit(max_iter=1) vs KMeans.fit(max_iter=1)")]:
        verdict = "MET" if ratios[key] >= 1.0 else "MISSED"
        print(f"target 'K-Medians no slower than K-Means', {label}: {verdict}")

    save_json("iteration_speed", {
        "args": vars(args), "step": step_name,
        "timings": {k: t.seconds for k, t in timings.items()},
        "loop_subsample_seconds": loop.seconds, "ratios": ratios, **results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
