"""The statistics of `two-grpo report`, pure numpy/scipy: paired bootstrap over seeds x eval prompts, IQM,
probability of improvement, Holm, exact t intervals, seeds needed, Pass@1..n and curves on a common grid.

Score matrices are [S, P]: S seeds (rows, the same seed list in every arm), P eval prompts (columns, the same
prompts in every arm), each entry one prompt's mean reward over its k eval samples at one eval.

The bootstrap (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice") resamples seeds with
replacement; a paired comparison applies the same resampled seeds to both arms on the same eval prompts, so
shared seed and prompt effects cancel. Each seed's score is its mean over the eval prompts, so eval-sampling
noise (prompts x k samples) is inside it once: the interval is conditional on the eval prompt set, as
rliable's is on its tasks. `prompts=True` also resamples the prompts (shared by both arms): inference for the
population the prompts were drawn from, wider (it counts the seed x prompt noise twice). With few seeds the
plain percentile interval is too narrow, so the interval is Hesterberg's expanded percentile interval: the
percentiles are taken at the tail probability whose normal quantile equals sqrt(S/(S-1)) t_{S-1}, which
matches the exact t interval for a mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import comb

import numpy as np

N_BOOT = 2000
ALPHA = 0.05


def t_quantile(df: int, alpha: float = ALPHA) -> float:
    from scipy.stats import t

    return float(t.ppf(1 - alpha / 2, df))


def t_interval(values, lo: float = -math.inf, hi: float = math.inf, alpha: float = ALPHA) -> tuple[float, ...]:
    """(mean, lower, upper): the exact Student-t interval of the mean over `values`, clipped to [lo, hi]
    (the metric's range); lower = upper = nan for fewer than 2 values."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    h = t_quantile(x.size - 1, alpha) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, max(lo, m - h), min(hi, m + h)


def expanded_tail(n_seeds: int, alpha: float = ALPHA) -> float:
    """Tail probability for percentile intervals from n_seeds seeds (Hesterberg 2015, expanded percentile)."""
    from scipy.stats import norm

    if n_seeds < 2:
        return alpha / 2
    z = math.sqrt(n_seeds / (n_seeds - 1)) * t_quantile(n_seeds - 1, alpha)
    return float(norm.sf(z))


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy trim_mean, 25% cut from each end)."""
    from scipy.stats import trim_mean

    x = np.asarray(values, dtype=float)
    return float(trim_mean(x, 0.25)) if x.size else math.nan


def _resample_weights(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """[n_boot, n] counts of each index in a with-replacement resample of size n."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _weighted_means(m: np.ndarray, ws: np.ndarray, wp: np.ndarray) -> np.ndarray:
    """Mean of m [S, P] over resampled rows ws [B, S] and columns wp [B, P] -> [B]."""
    return np.einsum("bs,sp,bp->b", ws, m, wp) / (ws.sum(1) * wp.sum(1))


@dataclass
class Comparison:
    """A paired comparison of arm a against arm b (differences a - b)."""

    diff: float  # mean difference over seeds x prompts
    lower: float
    upper: float
    p_value: float  # two-sided bootstrap p-value for "no difference"
    seeds: int
    prompts: int
    seed_sd: float  # SD over seeds of the per-seed mean difference
    ratio: float  # mean(a) / mean(b)
    ratio_lower: float
    ratio_upper: float
    prob_improvement: float  # P(per-seed score of a > of b), ties count 1/2
    poi_lower: float
    poi_upper: float

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2


def _percentiles(boot: np.ndarray, tail: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return math.nan, math.nan
    return float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def prob_improvement(x, y) -> float:
    """P(X > Y) + P(X = Y)/2 over all pairs of x's and y's values (Mann-Whitney; rliable's definition)."""
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def compare(
    a: np.ndarray, b: np.ndarray, paired: bool = True, n_boot: int = N_BOOT, seed: int = 0, prompts: bool = False
) -> Comparison:
    """a, b [S, P] on shared seeds (rows) and prompts (columns). paired=False resamples each arm's seeds on
    their own (what one would do without shared seeds; for comparison only); prompts=True resamples prompts too."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"score matrices must be the same [seeds, prompts] shape, got {a.shape} and {b.shape}")
    s, p = a.shape
    rng = np.random.default_rng(seed)
    ws = _resample_weights(rng, s, n_boot)
    wp = _resample_weights(rng, p, n_boot) if prompts else np.ones((n_boot, p))
    wb = ws if paired else _resample_weights(rng, s, n_boot)
    boot_a, boot_b = _weighted_means(a, ws, wp), _weighted_means(b, wb, wp)
    boot = boot_a - boot_b
    d = float(a.mean() - b.mean())
    tail = expanded_tail(s)
    lower, upper = _percentiles(boot, tail)
    # two-sided p: share of the re-centred bootstrap distribution at least as far from 0 as the estimate
    p_value = float(min(1.0, (np.abs(boot - boot.mean()) >= abs(d)).mean())) if s > 1 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_ratio = boot_a / boot_b
    ratio = float(a.mean() / b.mean()) if b.mean() else math.nan
    r_lo, r_hi = _percentiles(boot_ratio, tail)
    sa, sb = a.mean(1), b.mean(1)  # per-seed scores [S]
    poi = prob_improvement(sa, sb)
    poi_boot = np.empty(min(n_boot, 500))
    for i in range(poi_boot.size):  # seeds of each arm resampled on their own (the pairs of a U statistic)
        poi_boot[i] = prob_improvement(sa[rng.integers(0, s, s)], sb[rng.integers(0, s, s)])
    poi_lo, poi_hi = _percentiles(poi_boot, tail)
    seed_sd = float((sa - sb).std(ddof=1)) if s > 1 else math.nan
    return Comparison(d, lower, upper, p_value, s, p, seed_sd, ratio, r_lo, r_hi, poi, poi_lo, poi_hi)


def bootstrap_mean(m: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper) of one arm's [S, P] matrix, seed bootstrap (expanded percentile)."""
    m = np.asarray(m, float)
    rng = np.random.default_rng(seed)
    boot = _weighted_means(m, _resample_weights(rng, m.shape[0], n_boot), np.ones((n_boot, m.shape[1])))
    lo, hi = _percentiles(boot, expanded_tail(m.shape[0]))
    return float(m.mean()), lo, hi


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: sorted ascending, p_(i) x (m - i), running max,
    capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def seeds_needed(seed_sd: float, half_width: float, alpha: float = ALPHA, max_seeds: int = 10_000) -> int:
    """Smallest n >= 2 with t_{n-1} sd / sqrt(n) <= half_width (0 when sd is unknown)."""
    if not (seed_sd > 0) or not (half_width > 0) or math.isnan(seed_sd):
        return 0
    n = 2
    while n < max_seeds and t_quantile(n - 1, alpha) * seed_sd / math.sqrt(n) > half_width:
        n += 1
    return n


def verdict(c: Comparison, holm_p: float, min_effect: float, alpha: float = ALPHA) -> tuple[str, int]:
    """(better | worse | equivalent | no difference resolved, seeds that would resolve it (0 if resolved)).

    better/worse: the interval excludes 0 and Holm p < alpha. equivalent: the interval lies inside
    ±min_effect. Otherwise unresolved; the seeds are those that bring the half-width to min_effect / 2, at
    which an interval that covers 0 lies inside ±min_effect (from the observed seed SD of the difference)."""
    if c.lower > 0 and holm_p < alpha:
        return "better", 0
    if c.upper < 0 and holm_p < alpha:
        return "worse", 0
    if -min_effect <= c.lower and c.upper <= min_effect:
        return "equivalent", 0
    return "no difference resolved", seeds_needed(c.seed_sd, min_effect / 2, alpha)


def pass_at_ks(rewards_per_prompt: list[list[float]]) -> dict[int, float]:
    """{k: unbiased Pass@k averaged over prompts} for k = 1..n (n = the fewest samples of any prompt);
    reward 1.0 counts as solved (Chen et al. 2021: 1 - C(n-c, k) / C(n, k))."""
    if not rewards_per_prompt:
        return {}
    n_min = min(len(r) for r in rewards_per_prompt)
    out = {}
    for k in range(1, n_min + 1):
        vals = []
        for r in rewards_per_prompt:
            n, c = len(r), sum(x == 1.0 for x in r)
            vals.append(1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k))
        out[k] = sum(vals) / len(vals)
    return out


def interp_curve(xs, ys, grid) -> np.ndarray:
    """One seed's curve (xs ascending) linearly interpolated onto grid; nan outside [xs[0], xs[-1]]."""
    xs, ys, grid = np.asarray(xs, float), np.asarray(ys, float), np.asarray(grid, float)
    out = np.interp(grid, xs, ys)
    out[(grid < xs[0] - 1e-9) | (grid > xs[-1] + 1e-9)] = np.nan
    return out


def band(curves: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """curves [S, X] -> (mean [X], lower [X], upper [X]): seed-bootstrap band of the mean (expanded percentile)."""
    curves = np.asarray(curves, float)
    s = curves.shape[0]
    mean = curves.mean(0)
    if s < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    rng = np.random.default_rng(seed)
    w = _resample_weights(rng, s, n_boot)  # [B, S]
    boot = w @ curves / s  # [B, X]
    tail = expanded_tail(s)
    return mean, np.quantile(boot, tail, axis=0), np.quantile(boot, 1 - tail, axis=0)


def first_crossing(xs, ys, target: float) -> float:
    """Smallest x at which the linearly interpolated curve reaches target (nan if never)."""
    xs, ys = list(map(float, xs)), list(map(float, ys))
    for i, y in enumerate(ys):
        if y >= target:
            if i == 0:
                return xs[0]
            x0, x1, y0 = xs[i - 1], xs[i], ys[i - 1]
            return x0 + (x1 - x0) * (target - y0) / (y - y0)
    return math.nan
