"""Maximal covering location among candidate sites, in memory or Dask-chunked.

Open ``n_sites`` of the candidate sites so that as much demand weight as possible
lies within an L1 (Manhattan) distance ``radius`` of an open site, existing
sites counting as open (the maximal covering location problem, MCLP, of Church
and ReVelle 1974):

.. math::

    \\max_{S \\subseteq C, |S| = p} \\sum_i w_i \\,
    [\\min_{s \\in S \\cup F} \\lVert x_i - s \\rVert_1 \\le r].

Planning programmes are often judged this way ("share of residents within 5 km
of a fast charger") rather than by mean distance. The search (greedy, then
best-improvement swaps with chunk-additive integer gains) lives in
:mod:`evplanner._discrete`; this module is the scikit-learn-style estimator.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator

from evplanner import _discrete
from evplanner._validation import as_points, as_weights

__all__ = ["MaxCoverage"]


class MaxCoverage(BaseEstimator):
    """Choose sites among candidates to cover the most demand within a radius.

    Parameters
    ----------
    n_sites : int
        New sites to open, ``1 <= n_sites <= n_candidates``.
    radius : float
        Coverage radius, L1 (Manhattan) distance in the units of ``X`` (for
        example metres on a projected CRS); a point exactly at ``radius`` is
        covered.
    candidates : np.ndarray, shape (n_candidates, n_features)
        Candidate sites, same units as ``X``.
    fixed_centers : np.ndarray, shape (n_fixed, n_features), optional
        Existing sites: always open, they cover too.
    max_iter : int, default 300
        Cap on swaps per local search.
    n_rounds : int, default 30
        Rounds of iterated local search after the first local optimum: close
        a random number (1 to half) of the new sites, reopen as many drawn
        in proportion to the uncovered weight they would cover, swap to a
        local optimum again, and keep the result if it covers at least as
        much. 0: greedy and swaps only.
    random_state : int, RandomState or None
        Order in which equally good candidates are preferred (ties are common
        in coverage problems); an int makes the choice reproducible.

    Attributes
    ----------
    center_indices_ : np.ndarray, shape (n_sites,), int64
        Rows of ``candidates`` opened, ascending.
    cluster_centers_ : np.ndarray, shape (n_sites, n_features)
        ``candidates[center_indices_]``.
    covered_weight_ : float
        Demand weight within ``radius`` of an open site (new or fixed).
    coverage_share_ : float
        ``covered_weight_`` over the total weight.
    labels_ : np.ndarray or dask.array.Array, shape (n_samples,), int64
        Nearest open site per point: ``0 .. n_sites-1`` index
        ``cluster_centers_``, ``n_sites + f`` is ``fixed_centers[f]``; lazy for
        Dask input.
    history_ : np.ndarray
        Covered weight after the greedy start, after each swap of the first
        local search, and after each kept round.
    n_iter_ : int
        Swaps made in the first local search and the kept rounds.
    n_features_in_ : int

    Notes
    -----
    *Method.* Greedy: open, one at a time, the candidate covering the most
    still-uncovered weight. Then best-improvement swaps: with ``cnt_i`` the
    number of open sites covering point ``i``, the gain of opening ``c`` is
    the uncovered weight within ``radius`` of ``c``, the loss of closing
    ``j`` the weight covered by ``j`` alone, and the swap ``(c in, j out)``
    changes the covered weight by ``gain[c] - loss[j] + extra[c, j]``, with
    ``extra[c, j]`` the weight covered by ``j`` alone that ``c`` covers. One
    pass over the points computes all of them; a swap is made while one
    covers more. Rounds of iterated local search (``n_rounds``) then shake
    the solution out of its local optimum. Greedy alone is within ``1 - 1/e``
    of the optimum; on the benchmark instances the search reaches the optimum
    or comes near it (see ``benchmarks/README.md``).

    *Chunks.* Weights are rounded to whole quanta of a power-of-two fraction
    of ``n max(w)`` and the gains summed as integers, so every chunking of
    Dask input chooses exactly the sites NumPy input does.
    ``covered_weight_`` is summed in floating point (equal to ~1e-15).

    *Scale.* A point only meets the candidates within ``radius`` of it (a
    grid over the candidates finds them), so memory is O(n + n_candidates)
    plus the sparse pairs, never ``n x n_candidates``. In memory, when those
    pairs fit ``evplanner._discrete.COVERAGE_PAIRS_BYTES`` (512 MiB), they
    are found once and the whole search runs on them; otherwise, and for
    Dask input, every evaluation is a pass over the points that finds them
    again. Both make the same moves and open the same sites.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [30.0, 0.0]])
    >>> C = np.array([[0.5, 0.0], [10.0, 1.0], [29.0, 0.0]])
    >>> mc = MaxCoverage(2, radius=2.0, candidates=C, random_state=0).fit(
    ...     X, sample_weight=[1.0, 1.0, 1.0, 5.0])
    >>> mc.center_indices_.tolist(), mc.covered_weight_, mc.coverage_share_
    ([0, 2], 7.0, 0.875)
    """

    def __init__(
        self,
        n_sites: int,
        radius: float,
        candidates: np.ndarray,
        *,
        fixed_centers: np.ndarray | None = None,
        max_iter: int = 300,
        n_rounds: int = 30,
        random_state: int | np.random.RandomState | None = None,
    ):
        self.n_sites = n_sites
        self.radius = radius
        self.candidates = candidates
        self.fixed_centers = fixed_centers
        self.max_iter = max_iter
        self.n_rounds = n_rounds
        self.random_state = random_state

    def _check_params(self):
        k = _discrete.check_n_sites(self.n_sites, "n_sites")
        r = self.radius
        if (
            not isinstance(r, numbers.Real)
            or isinstance(r, bool)
            or not np.isfinite(r)
            or r < 0
        ):
            raise ValueError(f"radius must be a finite number >= 0, got {r!r}")
        it = self.max_iter
        if not isinstance(it, numbers.Integral) or isinstance(it, bool) or it < 0:
            raise ValueError(f"max_iter must be an integer >= 0, got {it!r}")
        nr = self.n_rounds
        if not isinstance(nr, numbers.Integral) or isinstance(nr, bool) or nr < 0:
            raise ValueError(f"n_rounds must be an integer >= 0, got {nr!r}")
        if self.candidates is None:
            raise ValueError(
                "candidates must be given: an array (n_candidates, n_features) "
                "of candidate sites, got None"
            )
        return k, float(r)

    def fit(self, X, y=None, sample_weight=None):
        """Choose the sites.

        Parameters
        ----------
        X : array-like or dask.array.Array, shape (n_samples, n_features)
            Demand points.
        y : ignored
        sample_weight : array-like or dask.array.Array, shape (n_samples,)
            Demand per point (for example vehicles or residents); default 1.

        Returns
        -------
        MaxCoverage
            self.
        """
        k, radius = self._check_params()
        X = as_points(X)
        w = as_weights(sample_weight, X)
        d = X.shape[1]
        cand = _discrete.check_candidates(self.candidates, d, k, "n_sites")
        fixed = _discrete.check_fixed(self.fixed_centers, d)
        res, total = _discrete.coverage_search(
            X,
            w,
            k,
            radius,
            cand,
            fixed,
            max_iter=self.max_iter,
            n_rounds=self.n_rounds,
            random_state=self.random_state,
        )
        self.center_indices_ = res.center_indices
        self.cluster_centers_ = cand[res.center_indices]
        self.covered_weight_ = res.objective
        self.coverage_share_ = res.objective / total
        self.labels_ = _discrete.site_labels(
            X, np.vstack([self.cluster_centers_, fixed])
        )
        self.history_ = res.history
        self.n_iter_ = res.n_iter
        self.n_features_in_ = d
        return self
