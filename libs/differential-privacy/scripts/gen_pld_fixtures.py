#!/usr/bin/env python3
"""Reference epsilons of Google's dp_accounting PLD accountant, for src/fixtures/dp-accounting-pld.json.

NOT part of the test run: it needs Python 3 with numpy and scipy (written against numpy 2.4.6 and
scipy 1.17.1) and is only run by hand when the fixtures change.

What it reproduces: `dp_accounting.pld.PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE,
value_discretization_interval=1e-4)` composing
`SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps)` and asked
`get_epsilon(delta)`. dp_accounting itself is not a dependency of this repository, so this is a
port, step by step and with the same numpy/scipy calls in the same order (so that it rounds off
exactly as dp_accounting does), of the path that call takes through
google/differential-privacy python/dp_accounting/dp_accounting/pld/:

- pld_privacy_accountant.py `PLDAccountant._maybe_compose`: start from `identity()` (a sparse pmf
  {0: 1}), build `from_gaussian_mechanism(sigma, sampling_prob=q)`, `self_compose(steps)` it and
  `compose` it onto the accountant's PLD; `get_epsilon` is `get_epsilon_for_delta`.
- privacy_loss_mechanism.py `GaussianPrivacyLoss` (sensitivity 1, pessimistic,
  log_mass_truncation_bound -50) and the `AdditiveNoisePrivacyLoss` methods it inherits: the
  subsampled privacy loss and its inverse, `mu_upper_cdf`, `mu_lower_log_cdf`, the hockey-stick
  divergence `get_delta_for_epsilon`, `connect_dots_bounds`; one pmf for the REMOVE and, when
  q < 1, one for the ADD adjacency.
- privacy_loss_distribution.py `_create_pld_pmf_from_monotone_privacy_loss` with
  use_connect_dots=True and `PrivacyLossDistribution.{compose, self_compose,
  get_epsilon_for_delta}` (the max over REMOVE and ADD).
- pld_pmf.py `create_pmf_pessimistic_connect_dots_fixed_gap`, `create_pmf` (sparse up to 1000
  points), `SparsePLDPmf` and `DensePLDPmf` `compose` / `self_compose` (tail truncation 1e-15),
  `_truncate_tails`, `_get_epsilon_for_delta`, `compose_pmfs`.
- common.py `self_convolve` (one FFT of 11-smooth length raised to the power `steps`, over the
  window that the Chernoff bounds of `compute_self_convolve_bounds` give) and
  `log_a_times_exp_b_plus_c`.

`--precision extended` does the FFT, the power and the inverse FFT of `self_convolve` in numpy
long double (complex256): the same algorithm with ~1000x less round-off, i.e. close to its
exact-arithmetic value (the fixture's epsilonExtended column). In double precision `steps`
multiplies the FFT's round-off: at 10^5-10^6 steps and delta 1e-10 dp_accounting's epsilon is off
its exact value by up to ~5%, and that double-precision value depends on the machine (numpy's
AVX-512 exp and log1p round differently from glibc's, and a 1-ulp change in a few pmf entries is
enough to move it: e.g. q=1e-4, sigma=0.5, 10^6 steps, delta=1e-10 gives 8.16 with AVX-512 and
16.5 under NPY_DISABLE_CPU_FEATURES="AVX512F AVX512_SKX X86_V4"; the exact value is 7.96). The
fixture was generated on an x86-64 machine with AVX-512.

Usage (from the repository root):
  python3 libs/differential-privacy/scripts/gen_pld_fixtures.py point Q SIGMA STEPS DELTA... \
      [--precision extended]
  python3 libs/differential-privacy/scripts/gen_pld_fixtures.py evaluate v1|corners|dense \
      OUT.jsonl [--jobs N]             # both precisions at the three deltas; resumable
  python3 libs/differential-privacy/scripts/gen_pld_fixtures.py fixture \
      libs/differential-privacy/src/fixtures/dp-accounting-pld.json v1.jsonl corners.jsonl \
      --noisy-from dense.jsonl

The fixture is the v1 grid, the corners grid and the points of the dense grid where dp_accounting's
double-precision result is off its long-double one by >= 0.25% (about 1.5 hours on two cores in
all; then run `npx prettier --write` on it).
The largest points take ~30 s and ~2 GB each.
"""

import argparse
import itertools
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import fft, signal, special, stats

TAIL_MASS_TRUNCATION = 1e-15  # dp_accounting's default for compose and self_compose
LOG_MASS_TRUNCATION_BOUND = -50  # from_gaussian_mechanism's default
MAX_PMF_SPARSE_SIZE = 1000  # pld_pmf._MAX_PMF_SPARSE_SIZE
DISCRETIZATION = 1e-4  # PLDAccountant's default value_discretization_interval


# ---------------------------------------------------------------- common.py


def _log_add(a, b):
    mn, mx = min(a, b), max(a, b)
    return mx + np.log1p(np.exp(mn - mx))


def _log_sub(a, b):
    if b >= a:
        raise ValueError(f'a must be greater than b. Got a={a} and b={b}.')
    return a + np.log1p(-np.exp(b - a))


def log_a_times_exp_b_plus_c(a, b, c):
    """log(a * exp(b) + c), branch for branch as dp_accounting's common.py."""
    if a == 0:
        return np.log(c)
    if a < 0:
        if c <= 0:
            raise ValueError(f'a exp(b) + c must be positive: {a}, {b}, {c}.')
        return _log_sub(np.log(c), np.log(-a) + b)
    if b == 0:
        return np.log(a + c)
    d = b + np.log(a)
    if c == 0:
        return d
    if c < 0:
        return _log_sub(d, np.log(-c))
    return _log_add(d, np.log(c))


def compute_self_convolve_bounds(input_list, num_times, tail_mass_truncation):
    """Chernoff bounds on the support of input_list convolved num_times with itself."""
    upper_bound = (len(input_list) - 1) * num_times
    lower_bound = 0
    if tail_mass_truncation == 0:
        return lower_bound, upper_bound
    orders = np.concatenate((np.arange(-20, 0), np.arange(1, 21))) / len(input_list)
    log_mgfs = [
        special.logsumexp(np.arange(len(input_list)) * order, b=input_list) for order in orders
    ]
    for order, log_mgf_value in zip(orders, log_mgfs):
        bound = (num_times * log_mgf_value + math.log(2 / tail_mass_truncation)) / order
        if not math.isfinite(bound):
            continue
        if order > 0:
            upper_bound = min(upper_bound, math.ceil(bound))
        if order < 0:
            lower_bound = max(lower_bound, math.floor(bound))
    return lower_bound, upper_bound


def self_convolve(input_list, num_times, tail_mass_truncation, dtype=np.float64):
    """One FFT raised to the power num_times over the Chernoff window (wraps modulo its length)."""
    lo, hi = compute_self_convolve_bounds(input_list, num_times, tail_mass_truncation)
    output_len = hi - lo + 1
    fast_len = fft.next_fast_len(max(output_len, len(input_list)))
    x = np.asarray(input_list, dtype=dtype)
    out = np.real(fft.ifft(fft.fft(x, fast_len) ** num_times))
    out = np.roll(out, -lo)[:output_len]
    return lo, np.asarray(out, dtype=np.float64)


def dictionary_to_list(d):
    offset = min(d)
    max_val = max(d)
    return offset, [d.get(i, 0) for i in range(offset, max_val + 1)]


# ---------------------------------------------------------------- privacy_loss_mechanism.py


class GaussianPrivacyLoss:
    """Poisson-subsampled Gaussian privacy loss, sensitivity 1, pessimistic estimate."""

    def __init__(self, standard_deviation, sampling_prob, adjacency):
        assert adjacency in ('ADD', 'REMOVE')
        self.sd = standard_deviation
        self.q = sampling_prob
        self.adjacency = adjacency
        self.sensitivity = 1
        self.rv = stats.norm(scale=standard_deviation)

    def noise_cdf(self, x):
        return self.rv.cdf(x)

    def noise_log_cdf(self, x):
        return self.rv.logcdf(x)

    def mu_upper_cdf(self, x):
        if self.adjacency == 'ADD':
            return self.noise_cdf(x)
        if self.q == 1.0:
            return self.noise_cdf(np.add(x, self.sensitivity))
        return (1 - self.q) * self.noise_cdf(x) + self.q * self.noise_cdf(
            np.add(x, self.sensitivity)
        )

    def mu_lower_log_cdf(self, x):
        if self.adjacency == 'ADD':
            if self.q == 1.0:
                return self.noise_log_cdf(np.add(x, -self.sensitivity))
            return np.logaddexp(
                np.log1p(-self.q) + self.noise_log_cdf(x),
                np.log(self.q) + self.noise_log_cdf(np.add(x, -self.sensitivity)),
            )
        return self.noise_log_cdf(x)

    def privacy_loss_without_subsampling(self, x):
        s = self.sensitivity
        if self.adjacency == 'ADD':
            return s * (0.5 * s - x) / (self.sd**2)
        return s * (-0.5 * s - x) / (self.sd**2)

    def inverse_privacy_loss_without_subsampling(self, loss):
        s = self.sensitivity
        if self.adjacency == 'ADD':
            return 0.5 * s - loss * (self.sd**2) / s
        return -0.5 * s - loss * (self.sd**2) / s

    def privacy_loss(self, x):
        p = self.privacy_loss_without_subsampling(x)
        if self.q == 1.0:
            return p
        if self.adjacency == 'ADD':
            return -log_a_times_exp_b_plus_c(self.q, -p, 1 - self.q)
        return log_a_times_exp_b_plus_c(self.q, p, 1 - self.q)

    def inverse_privacy_loss(self, loss):
        q = self.q
        if q == 1.0:
            return self.inverse_privacy_loss_without_subsampling(loss)
        if self.adjacency == 'ADD':
            if math.isclose(loss, -math.log(1 - q)):
                return self.inverse_privacy_loss_without_subsampling(math.inf)
            if loss > -math.log(1 - q):
                raise ValueError(f'privacy_loss ({loss}) is larger than -log(1 - q)')
            p = -log_a_times_exp_b_plus_c(1 / q, -loss, 1 - 1 / q)
            return self.inverse_privacy_loss_without_subsampling(p)
        if math.isclose(loss, math.log(1 - q)):
            return self.inverse_privacy_loss_without_subsampling(-math.inf)
        if loss <= math.log(1 - q):
            raise ValueError(f'privacy_loss ({loss}) is smaller than log(1 - q)')
        p = log_a_times_exp_b_plus_c(1 / q, loss, 1 - 1 / q)
        return self.inverse_privacy_loss_without_subsampling(p)

    def get_delta_for_epsilon(self, epsilons):
        """The hockey-stick divergence at each of `epsilons` (an array)."""
        epsilons = np.asarray(epsilons)
        deltas = np.zeros_like(epsilons, dtype=float)
        if self.q == 1.0:
            inverse_indices = np.full_like(epsilons, True, dtype=bool)
        elif self.adjacency == 'ADD':
            inverse_indices = epsilons < -math.log1p(-self.q)
        else:
            inverse_indices = epsilons > math.log1p(-self.q)
            other = np.logical_not(inverse_indices)
            deltas[other] = -np.expm1(epsilons[other])
        x_cutoffs = np.array([self.inverse_privacy_loss(e) for e in epsilons[inverse_indices]])
        deltas[inverse_indices] = self.mu_upper_cdf(x_cutoffs) - np.exp(
            epsilons[inverse_indices] + self.mu_lower_log_cdf(x_cutoffs)
        )
        return np.clip(deltas, 0, 1)

    def connect_dots_bounds(self):
        lower_x = self.rv.ppf(0.5 * math.exp(LOG_MASS_TRUNCATION_BOUND))
        upper_x = -lower_x
        if self.adjacency == 'ADD':
            upper_x += self.sensitivity
        else:
            lower_x -= self.sensitivity
        return self.privacy_loss(lower_x), self.privacy_loss(upper_x)  # (eps_upper, eps_lower)


# ---------------------------------------------------------------- pld_pmf.py


def _truncate_tails(probs, tail_mass_truncation):
    """Pessimistic: the left tail goes onto the first kept point, the right one to infinity."""
    if tail_mass_truncation == 0:
        return 0, probs, 0

    def prefix(arr, threshold):
        s = 0
        for i, val in enumerate(arr):
            s += val
            if s > threshold:
                return i
        return len(arr)

    left_idx = prefix(probs, tail_mass_truncation / 2)
    right_idx = len(probs) - prefix(np.flip(probs), tail_mass_truncation / 2)
    right_idx = max(right_idx, left_idx + 1)
    left_mass = np.sum(probs[:left_idx])
    right_mass = np.sum(probs[right_idx:])
    truncated = probs[left_idx:right_idx]
    truncated[0] += left_mass
    return left_idx, truncated, right_mass


def _get_epsilon_for_delta(infinity_mass, reversed_losses, probs, delta):
    if infinity_mass > delta:
        return math.inf
    mass_upper, mass_lower = infinity_mass, 0
    for loss, prob in zip(reversed_losses, probs):
        if (
            mass_upper > delta
            and mass_lower > 0
            and math.log((mass_upper - delta) / mass_lower) >= loss
        ):
            break
        mass_upper += prob
        mass_lower += math.exp(-loss) * prob
        if mass_upper >= delta and mass_lower == 0:
            return max(0, loss)
    if mass_upper <= mass_lower + delta:
        return 0
    return math.log((mass_upper - delta) / mass_lower)


class DensePmf:
    def __init__(self, d, lower_loss, probs, infinity_mass, precision):
        self.d, self.lower_loss, self.probs, self.infinity_mass = d, lower_loss, probs, infinity_mass
        self.precision = precision

    @property
    def size(self):
        return len(self.probs)

    def to_dense(self):
        return self

    def compose(self, other, tail):
        lower_loss = self.lower_loss + other.lower_loss
        probs = signal.fftconvolve(self.probs, other.probs)
        inf = self.infinity_mass + other.infinity_mass - self.infinity_mass * other.infinity_mass
        offset, probs, right = _truncate_tails(probs, tail)
        return DensePmf(self.d, lower_loss + offset, probs, inf + right, self.precision)

    def self_compose(self, num_times, tail=TAIL_MASS_TRUNCATION):
        dtype = np.longdouble if self.precision == 'extended' else np.float64
        lo, probs = self_convolve(self.probs, num_times, tail, dtype)
        inf = tail - math.expm1(num_times * math.log1p(-self.infinity_mass))
        return DensePmf(self.d, self.lower_loss * num_times + lo, np.array(probs), inf, self.precision)

    def get_epsilon_for_delta(self, delta):
        upper_loss = (self.lower_loss + len(self.probs) - 1) * self.d
        reversed_losses = itertools.count(upper_loss, -self.d)
        return _get_epsilon_for_delta(self.infinity_mass, reversed_losses, np.flip(self.probs), delta)


class SparsePmf:
    def __init__(self, d, loss_probs, infinity_mass, precision):
        self.d, self.loss_probs, self.infinity_mass = d, loss_probs, infinity_mass
        self.precision = precision

    @property
    def size(self):
        return len(self.loss_probs)

    def to_dense(self):
        lower, probs = dictionary_to_list(self.loss_probs)
        return DensePmf(self.d, lower, np.array(probs), self.infinity_mass, self.precision)

    def compose(self, other, tail):
        conv = {}
        for k1, v1 in self.loss_probs.items():
            for k2, v2 in other.loss_probs.items():
                conv[k1 + k2] = conv.get(k1 + k2, 0.0) + v1 * v2
        inf = self.infinity_mass + other.infinity_mass - self.infinity_mass * other.infinity_mass
        keys = sorted(conv.keys())
        probs = [conv[k] for k in keys]
        offset, probs, right = _truncate_tails(probs, tail)
        keys = keys[offset : offset + len(probs)]
        return SparsePmf(self.d, dict(zip(keys, probs)), inf + right, self.precision)

    def self_compose(self, num_times, tail=TAIL_MASS_TRUNCATION):
        if num_times == 1:
            return self
        if self.size**num_times > MAX_PMF_SPARSE_SIZE:
            return self.to_dense().self_compose(num_times, tail)
        result = self
        for i in range(2, num_times + 1):
            result = result.compose(self, 0 if i != num_times else tail)
        return result

    def get_epsilon_for_delta(self, delta):
        losses = sorted(self.loss_probs.keys())
        probs = [self.loss_probs[k] for k in losses]
        losses = [k * self.d for k in losses]
        return _get_epsilon_for_delta(self.infinity_mass, losses[::-1], probs[::-1], delta)


def create_pmf(loss_probs, d, infinity_mass, precision):
    if len(loss_probs) <= MAX_PMF_SPARSE_SIZE:
        return SparsePmf(d, loss_probs, infinity_mass, precision)
    lower, probs = dictionary_to_list(loss_probs)
    return DensePmf(d, lower, np.array(probs), infinity_mass, precision)


def compose_pmfs(p1, p2, tail):
    if isinstance(p1, SparsePmf) and isinstance(p2, SparsePmf) and p1.size * p2.size <= MAX_PMF_SPARSE_SIZE:
        return p1.compose(p2, tail)
    return p1.to_dense().compose(p2.to_dense(), tail)


def connect_dots_fixed_gap(d, lo, hi, deltas, precision):
    deltas = np.asarray(deltas, dtype=np.float64)
    if lo == hi:
        return create_pmf({lo: 1 - deltas[0]}, d, deltas[0], precision)
    if np.any(np.diff(deltas) > 1e-12):
        raise ValueError('deltas are not in non-increasing order')
    deltas = np.minimum.accumulate(deltas)
    diffs = np.diff(deltas)
    probs = np.zeros_like(deltas)
    probs[0] = 1 - deltas[0] + diffs[0] / math.expm1(d)
    probs[1:-1] = (diffs[1:] - diffs[:-1] * math.exp(d)) / math.expm1(d)
    probs[-1] = diffs[-1] / math.expm1(-d)
    probs = np.maximum(0.0, probs)
    return create_pmf(dict(zip(range(lo, hi + 1), probs)), d, deltas[-1], precision)


# ---------------------------------------------------------------- privacy_loss_distribution.py


def gaussian_pmf(sigma, q, adjacency, d, precision):
    loss = GaussianPrivacyLoss(sigma, q, adjacency)
    eps_upper, eps_lower = loss.connect_dots_bounds()
    hi = math.ceil(eps_upper / d)
    lo = math.floor(eps_lower / d)
    deltas = loss.get_delta_for_epsilon(np.arange(lo, hi + 1) * d)
    return connect_dots_fixed_gap(d, lo, hi, deltas, precision)


class Pld:
    """PrivacyLossDistribution: a REMOVE pmf and, unless symmetric, an ADD one."""

    def __init__(self, remove, add=None):
        self.remove = remove
        self.symmetric = add is None
        self.add = remove if add is None else add

    def compose(self, other, tail=TAIL_MASS_TRUNCATION):
        remove = compose_pmfs(self.remove, other.remove, tail)
        if self.symmetric and other.symmetric:
            return Pld(remove)
        return Pld(remove, compose_pmfs(self.add, other.add, tail))

    def self_compose(self, num_times, tail=TAIL_MASS_TRUNCATION):
        remove = self.remove.self_compose(num_times, tail)
        if self.symmetric:
            return Pld(remove)
        return Pld(remove, self.add.self_compose(num_times, tail))

    def get_epsilon_for_delta(self, delta):
        e = self.remove.get_epsilon_for_delta(delta)
        if self.symmetric:
            return e
        return max(e, self.add.get_epsilon_for_delta(delta))


def from_gaussian_mechanism(sigma, q, d, precision):
    remove = gaussian_pmf(sigma, q, 'REMOVE', d, precision)
    if q == 1.0:
        return Pld(remove)
    return Pld(remove, gaussian_pmf(sigma, q, 'ADD', d, precision))


def accountant_pld(history, d=DISCRETIZATION, precision='double'):
    """PLDAccountant: identity, then compose each (q, sigma, steps) self-composed."""
    pld = Pld(SparsePmf(d, {0: 1}, 0, precision))
    for q, sigma, steps in history:
        if q == 0 or steps == 0:
            continue
        pld = pld.compose(from_gaussian_mechanism(sigma, q, d, precision).self_compose(steps))
    return pld


def grid_size(pld):
    return max(pld.remove.size, pld.add.size)


# ---------------------------------------------------------------- grids and fixtures

DELTAS = [1e-10, 1e-5, 0.1]

# Windows beyond this many grid points are skipped: the TypeScript accountant coarsens its grid
# there (PldOptions.maxGridSize, 2^23), so it no longer computes dp_accounting's value.
MAX_WINDOW = 2**23

# The fixture's original grid (dp-accounting-pld.json before 2026-11): this product, minus the
# combinations whose window exceeds MAX_WINDOW, plus a few extra points.
V1_Q = [1e-6, 0.001, 0.01, 0.1, 0.5, 1.0]
V1_SIGMA = [0.5, 1.0, 2.0, 5.0, 20.0, 100.0]
V1_STEPS = [1, 100, 10000]
V1_EXTRA = [
    (1e-6, 0.3, 1000), (1e-6, 100.0, 1000000), (0.001, 2.0, 1000000), (256 / 60000, 1.1, 14063),
    (0.01, 0.3, 100), (0.01, 1.0, 1000000), (0.1, 100.0, 1000000), (0.5, 5.0, 1000), (1.0, 0.3, 1),
]

# The dense grid over the spec's domain (q in (0, 1], sigma in [0.3, 100], steps up to 10^6).
DENSE_Q = [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0]
DENSE_SIGMA = [0.3, 0.5, 1.0, 2.0, 5.0, 20.0, 100.0]
DENSE_STEPS = [1, 10, 100, 1000, 10000, 100000, 1000000]

# The 10^5 and 10^6-step corner where dp_accounting's double-precision round-off dominates.
CORNER_Q = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]
CORNER_SIGMA = [0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0]
CORNER_STEPS = [100000, 1000000]


def grid(name):
    if name == 'v1':
        pts = [(q, s, t) for q in V1_Q for s in V1_SIGMA for t in V1_STEPS] + V1_EXTRA
    elif name == 'dense':
        pts = [(q, s, t) for q in DENSE_Q for s in DENSE_SIGMA for t in DENSE_STEPS]
    elif name == 'corners':
        pts = [(q, s, t) for t in CORNER_STEPS for q in CORNER_Q for s in CORNER_SIGMA]
    else:
        raise ValueError(f'unknown grid {name}')
    return sorted(set(pts))


def window(q, sigma, steps, d=DISCRETIZATION):
    """Grid points of the largest self-composed pmf (REMOVE or ADD), without composing."""
    pld = from_gaussian_mechanism(sigma, q, d, 'double')
    w = 0
    for pmf in [pld.remove] if pld.symmetric else [pld.remove, pld.add]:
        dense = pmf.to_dense()
        if steps == 1:
            w = max(w, dense.size)
        else:
            lo, hi = compute_self_convolve_bounds(dense.probs, steps, TAIL_MASS_TRUNCATION)
            w = max(w, hi - lo + 1)
    return w


def evaluate(point):
    """dp_accounting's epsilons at DELTAS in double and in extended precision, or a skip."""
    q, sigma, steps = point
    w = window(q, sigma, steps)
    out = {'q': q, 'sigma': sigma, 'steps': steps, 'window': w}
    if w > MAX_WINDOW:
        out['skipped'] = f'window {w} > {MAX_WINDOW}'
        return out
    for precision in ['double', 'extended']:
        pld = accountant_pld([(q, sigma, steps)], precision=precision)
        out[precision] = [pld.get_epsilon_for_delta(delta) for delta in DELTAS]
        out['gridSize'] = grid_size(pld)
    return out


def _noisy(double, extended):
    """dp_accounting's double-precision epsilon off its long-double value by >= 0.25%."""
    if double is None or extended is None:
        return (double is None) != (extended is None)
    return abs(double - extended) >= 0.0025 * max(extended, 1e-4)


def _json_number(x):
    return None if math.isinf(x) else x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('point', help='epsilons of one (q, sigma, steps) at the given deltas')
    p.add_argument('q', type=float)
    p.add_argument('sigma', type=float)
    p.add_argument('steps', type=int)
    p.add_argument('deltas', type=float, nargs='+')
    p.add_argument('--precision', choices=['double', 'extended'], default='double')
    e = sub.add_parser('evaluate', help='evaluate a named grid into a JSON-lines file (resumable)')
    e.add_argument('grid', choices=['v1', 'dense', 'corners'])
    e.add_argument('out')
    e.add_argument('--jobs', type=int, default=1)
    f = sub.add_parser('fixture', help='build dp-accounting-pld.json from evaluated JSON lines')
    f.add_argument('out')
    f.add_argument('inputs', nargs='+')
    f.add_argument('--noisy-from', default=None,
                   help='also take the points of this JSON-lines file where double and extended '
                        'precision differ by >= 0.25%% at some delta')
    args = ap.parse_args()

    if args.cmd == 'point':
        pld = accountant_pld([(args.q, args.sigma, args.steps)], precision=args.precision)
        for delta in args.deltas:
            print(json.dumps({'q': args.q, 'sigma': args.sigma, 'steps': args.steps,
                              'delta': delta, 'epsilon': pld.get_epsilon_for_delta(delta),
                              'gridSize': grid_size(pld), 'precision': args.precision}))
        return

    if args.cmd == 'evaluate':
        done = set()
        try:
            for line in open(args.out):
                r = json.loads(line)
                done.add((r['q'], r['sigma'], r['steps']))
        except FileNotFoundError:
            pass
        todo = [pt for pt in grid(args.grid) if pt not in done]
        with open(args.out, 'a') as out, ProcessPoolExecutor(args.jobs) as ex:
            for r in ex.map(evaluate, todo):
                for k in ('double', 'extended'):
                    if k in r:
                        r[k] = [_json_number(x) for x in r[k]]
                out.write(json.dumps(r) + '\n')
                out.flush()
        return

    if args.cmd == 'fixture':
        rows = {}
        for path in args.inputs:
            for line in open(path):
                r = json.loads(line)
                if 'double' in r:
                    rows[(r['q'], r['sigma'], r['steps'])] = r
        if args.noisy_from:
            for line in open(args.noisy_from):
                r = json.loads(line)
                if 'double' in r and any(_noisy(d, x) for d, x in zip(r['double'], r['extended'])):
                    rows[(r['q'], r['sigma'], r['steps'])] = r
        cases = []
        for (q, sigma, steps), r in sorted(rows.items()):
            for i, delta in enumerate(DELTAS):
                cases.append([q, sigma, steps, delta, r['double'][i], r['extended'][i], r['gridSize']])
        fixture = {
            '_comment': (
                "Reference epsilons of Google dp_accounting's PLDAccountant(ADD_OR_REMOVE_ONE, "
                'value_discretization_interval=1e-4) for SelfComposed(PoissonSampled(q, '
                'Gaussian(sigma)), steps), from libs/differential-privacy/scripts/'
                'gen_pld_fixtures.py (a port of dp_accounting pld/*.py; numpy 2.4.6, scipy '
                '1.17.1, x86-64 with AVX-512). epsilon: dp_accounting as it runs, in double '
                'precision. epsilonExtended: the same algorithm with the FFT, its power and the '
                'inverse FFT in long double (~1000x less round-off), i.e. close to the value the '
                'algorithm has in exact arithmetic. At 10^5-10^6 steps and delta 1e-10 the two '
                'differ by up to ~5%: dp_accounting multiplies its FFT round-off by the number '
                'of steps (and its double result there even depends on the CPU: numpy\'s '
                'AVX-512 exp differs from glibc\'s). null: infinite. gridSize: points of the '
                'larger composed pmf.'
            ),
            'columns': ['q', 'sigma', 'steps', 'delta', 'epsilon', 'epsilonExtended', 'gridSize'],
            'cases': cases,
        }
        with open(args.out, 'w') as out:
            out.write(format_fixture(fixture))
        return


def format_fixture(fixture):
    """JSON with one case per line (prettier keeps short arrays on one line too)."""
    head = json.dumps({k: v for k, v in fixture.items() if k != 'cases'}, indent=2)[:-2]
    lines = ',\n'.join('    ' + json.dumps(c) for c in fixture['cases'])
    return head + ',\n  "cases": [\n' + lines + '\n  ]\n}\n'


if __name__ == '__main__':
    main()
