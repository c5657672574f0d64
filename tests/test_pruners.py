"""Scorers and the pruning schedule: exact counts, nested masks, ties, hygiene, SynFlow range."""

from __future__ import annotations

import copy
import ctypes
import gc
import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunetui.core import catalog
from prunetui.core.config import RunConfig, kept_count
from prunetui.core.errors import ConfigError, RunCancelled
from prunetui.core.events import CancelToken, ignore
from prunetui.core.masks import (
    Prunable,
    apply_masks,
    attach_masks,
    counts,
    find_prunable,
    reinit_kept,
    shuffle_masks,
    snapshot,
)
from prunetui.core.models import build_model
from prunetui.core.pruners import LAYERWISE, SCORERS, grasp, schedule
from prunetui.core.pruners.schedule import apportion, kept_schedule, prune
from prunetui.core.pruners.snip import scoring_state
from prunetui.core.run import build as run_build

SHAPE = (3, 8, 8)


def convnet(seed: int = 0) -> nn.Module:
    """A small conv net with batch norm, max pooling and biases: 3,928 prunable weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def deep_narrow(seed: int = 0) -> nn.Module:
    """An fc net of 8 narrow linear layers: the setting where single-shot pruning collapses."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(16, 24), nn.ReLU()]
    for _ in range(6):
        layers += [nn.Linear(24, 24), nn.ReLU()]
    layers.append(nn.Linear(24, 4))
    return nn.Sequential(*layers)


def data(n: int = 8, shape: tuple[int, ...] = SHAPE, classes: int = 10) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mask_list(prunables: list[Prunable]) -> list[Tensor]:
    return [p.mask.clone() for p in prunables]


def run(
    model: nn.Module,
    scorer: str,
    c: float,
    *,
    scope: str = "global",
    sched: str = "exponential",
    iterations: int = 1,
    seed: int = 0,
    batch: tuple[Tensor, Tensor] | None = None,
) -> tuple[list[Prunable], list[tuple[int, int, float, list[Tensor]]]]:
    prunables = attach_masks(model)
    steps: list[tuple[int, int, float, list[Tensor]]] = []

    def on_step(i: int, n: int, density: float) -> None:
        steps.append((i, n, density, mask_list(prunables)))

    prune(
        model,
        prunables,
        scorer,
        c,
        scope=scope,
        schedule=sched,
        iterations=iterations,
        batch=batch if batch is not None else data(),
        generator=gen(seed),
        on_step=on_step,
    )
    return prunables, steps


def test_registry_matches_catalog() -> None:
    assert [*SCORERS, *LAYERWISE, "imp"] == list(catalog.PRUNERS)  # imp prunes in training
    assert not set(SCORERS) & set(LAYERWISE)


# --- the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [1, 5])
@pytest.mark.parametrize("c", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("scorer", list(SCORERS))
def test_exact_counts_nested_masks_zeroed_weights(
    scorer: str, scope: str, c: float, iterations: int
) -> None:
    model = convnet()
    prunables, steps = run(model, scorer, c, scope=scope, iterations=iterations)
    total, remaining = counts(prunables)
    assert total == 3928
    assert remaining == kept_count(total, c) == round(total * 10**-c)
    # One report per iteration, densities exact and non-increasing, masks nested.
    assert [s[0] for s in steps] == list(range(1, iterations + 1))
    assert all(s[1] == iterations for s in steps)
    densities = [s[2] for s in steps]
    assert densities == sorted(densities, reverse=True)
    assert densities[-1] == remaining / total
    for (_, _, density, masks), k in zip(
        steps, kept_schedule(total, c, "exponential", iterations), strict=True
    ):
        assert sum(int(m.sum()) for m in masks) == k == round(density * total)
    for (*_, before), (*_, after) in itertools.pairwise(steps):
        for b, a in zip(before, after, strict=True):
            assert not bool((a & ~b).any()), "a pruned weight came back"
    for p in prunables:
        assert bool((p.param[~p.mask] == 0).all())
    if scope == "local" and c > 0:
        # Every layer keeps its share of the total, within one entry of n_l * density.
        for p in prunables:
            assert abs(int(p.mask.sum()) - p.mask.numel() * remaining / total) < 1


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("scorer", list(SCORERS))
def test_linear_schedule_exact(scorer: str, scope: str) -> None:
    prunables, steps = run(convnet(), scorer, 2.0, scope=scope, sched="linear", iterations=4)
    total, remaining = counts(prunables)
    assert remaining == kept_count(total, 2.0)
    expected = [round(total * (1 - (1 - 10**-2.0) * i / 4)) for i in (1, 2, 3)]
    assert [round(s[2] * total) for s in steps[:3]] == expected


def test_kept_schedule_ends_exactly_for_awkward_floats() -> None:
    for total in (1, 7, 999, 14_719_818):
        for c in (0.1, 0.3, 0.7, 1.0 / 3.0, 2.0, 2.9):
            for n in (1, 3, 7, 100):
                ks = kept_schedule(total, c, "exponential", n)
                assert ks[-1] == kept_count(total, c)
                assert ks == sorted(ks, reverse=True) and ks[0] <= total


def test_all_equal_scores_ties_go_to_lower_positions() -> None:
    def constant() -> nn.Module:
        model = convnet()
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return model

    for scope in ("global", "local"):
        for iterations in (1, 5):
            prunables, _ = run(constant(), "mag", 1.0, scope=scope, iterations=iterations)
            again, _ = run(constant(), "mag", 1.0, scope=scope, iterations=iterations)
            total, remaining = counts(prunables)
            assert remaining == kept_count(total, 1.0)
            assert all(torch.equal(a.mask, b.mask) for a, b in zip(prunables, again, strict=True))
            if scope == "global":
                flat = torch.cat([p.mask.reshape(-1) for p in prunables])
                assert bool(flat[:remaining].all()) and not bool(flat[remaining:].any())
            else:
                for p in prunables:
                    m = p.mask.reshape(-1)
                    kept = int(m.sum())
                    assert bool(m[:kept].all()) and not bool(m[kept:].any())


def _reference(scores: list[Tensor], k: int) -> Tensor:
    """Top k by (score descending, position ascending) via a full stable sort."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return keep


class _Fixed:
    """A scorer returning given scores (a fresh copy per call, as the contract says)."""

    def __init__(self, scores: list[Tensor]) -> None:
        self.scores = scores
        self.calls = 0

    def __call__(
        self,
        model: nn.Module,
        prunables: list[Prunable],
        batch: tuple[Tensor, Tensor] | None,
        generator: torch.Generator,
    ) -> list[Tensor]:
        self.calls += 1
        return [s.clone() for s in self.scores]


@pytest.mark.parametrize("levels", [3, 50, 0])  # heavy ties, some ties, continuous
def test_large_selection_matches_full_sort(monkeypatch: pytest.MonkeyPatch, levels: int) -> None:
    # Big enough (300k) to take the sampled O(n) path rather than the small-input sort.
    torch.manual_seed(levels)
    model = nn.Sequential(nn.Linear(600, 400), nn.ReLU(), nn.Linear(400, 300))
    prunables = attach_masks(model)
    g = gen(levels)
    shapes = [p.param.shape for p in prunables]
    if levels:
        scores = [torch.randint(0, levels, s, generator=g).double() for s in shapes]
    else:
        scores = [torch.rand(s, generator=g, dtype=torch.float64) for s in shapes]
    monkeypatch.setitem(SCORERS, "fixed", _Fixed(scores))
    total = sum(s.numel() for s in scores)
    assert total > schedule._DIRECT_LIMIT
    prune(model, prunables, "fixed", 0.4, iterations=1, batch=None, generator=g)
    got = torch.cat([p.mask.reshape(-1) for p in prunables])
    assert torch.equal(got, _reference(scores, kept_count(total, 0.4)))


def test_selection_recursion_and_retries_match_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny sample and sort limits force the bracketing, its retries and its recursion on small
    # inputs, with ties, and pruned entries holding any value (they must be ignored).
    monkeypatch.setattr(schedule, "_DIRECT_LIMIT", 8)
    monkeypatch.setattr(schedule, "_SAMPLE", 16)
    monkeypatch.setattr(schedule, "_RUN", 4)
    g = gen(5)
    for trial in range(40):
        sizes = [int(v) for v in torch.randint(1, 400, (3,), generator=g)]
        top = [2, 10, 1000][trial % 3]
        values = [torch.randint(0, top, (n,), generator=g).double() for n in sizes]
        dead = [0.3, 0.95][trial % 2]
        lives = [torch.rand(v.shape, generator=g) >= dead for v in values]
        ranked = [torch.where(live, v, -math.inf) for v, live in zip(values, lives, strict=True)]
        alive = [int(live.sum()) for live in lives]
        for k in sorted({0, 1, sum(alive) // 2, max(sum(alive) - 1, 0), sum(alive)}):
            outs = [torch.empty(v.shape, dtype=torch.bool) for v in values]
            kept = schedule._select(values, k, outs, lives, alive)
            assert torch.equal(torch.cat(outs), _reference(ranked, k)), (trial, k)
            assert kept == [int(o.sum()) for o in outs]
            outs = [torch.empty(v.shape, dtype=torch.bool) for v in values]
            kept = schedule._select(values, k, outs, None, sizes)  # every entry live
            assert torch.equal(torch.cat(outs), _reference(values, k)), (trial, k)
            assert kept == [int(o.sum()) for o in outs]


def test_apportion_sums_exactly_within_caps() -> None:
    assert apportion(10, [3, 3, 4], [3, 3, 4]) == [3, 3, 4]
    assert apportion(7, [5, 5, 5], [5, 5, 5]) == [3, 2, 2]  # remainder to the earlier layer
    assert apportion(9, [10, 10], [2, 10]) == [2, 7]  # a capped layer's share moves on
    g = gen(1)
    for _ in range(200):
        sizes = [int(v) for v in torch.randint(1, 1000, (5,), generator=g)]
        k = int(torch.randint(0, sum(sizes) + 1, (1,), generator=g))
        parts = apportion(k, sizes, sizes)
        assert sum(parts) == k
        for part, n in zip(parts, sizes, strict=True):
            assert 0 <= part <= n and abs(part - k * n / sum(sizes)) < 1
    with pytest.raises(ValueError):
        apportion(5, [3, 3], [2, 2])


def test_compression_zero_does_not_score(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> list[Tensor]:
        raise AssertionError("scored at compression 0")

    monkeypatch.setitem(SCORERS, "boom", boom)
    model = convnet()
    prunables = attach_masks(model)
    steps: list[float] = []
    prune(
        model,
        prunables,
        "boom",
        0.0,
        iterations=3,
        batch=data(),
        generator=gen(),
        on_step=lambda i, n, d: steps.append(d),
    )
    assert steps == [1.0, 1.0, 1.0]
    assert counts(prunables) == (3928, 3928)


def test_pruning_continues_from_existing_masks() -> None:
    model = convnet()
    prunables = attach_masks(model)
    prune(model, prunables, "mag", 0.5, iterations=1, batch=data(), generator=gen())
    before = mask_list(prunables)
    prune(model, prunables, "rand", 1.0, iterations=2, batch=data(), generator=gen())
    assert counts(prunables)[1] == kept_count(3928, 1.0)
    for b, p in zip(before, prunables, strict=True):
        assert not bool((p.mask & ~b).any())


def test_cancel_stops_after_the_current_iteration() -> None:
    model = convnet()
    prunables = attach_masks(model)
    token = CancelToken()
    seen: list[int] = []

    def on_step(i: int, n: int, d: float) -> None:
        seen.append(i)
        token.cancel()

    with pytest.raises(RunCancelled):
        prune(
            model,
            prunables,
            "mag",
            1.0,
            iterations=5,
            batch=data(),
            generator=gen(),
            on_step=on_step,
            cancel=token,
        )
    assert seen == [1]
    assert counts(prunables)[1] == kept_schedule(3928, 1.0, "exponential", 5)[0]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"scorer_name": "nope"}, "pruner"),
        ({"scope": "layer"}, "scope"),
        ({"schedule": "cosine"}, "schedule"),
        ({"iterations": 0}, "prune-iterations"),
        ({"compression": -1.0}, "compression"),
        ({"compression": 12.0}, "compression"),  # would keep no weight
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], word: str) -> None:
    model = convnet()
    args: dict[str, object] = {"scorer_name": "mag", "compression": 1.0, "iterations": 1}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=word):
        prune(model, attach_masks(model), batch=data(), generator=gen(), **args)  # type: ignore[arg-type]


# --- scorers --------------------------------------------------------------------------------


@pytest.mark.parametrize("scorer", list(SCORERS))
def test_scorers_leave_the_model_as_they_found_it(scorer: str) -> None:
    model = convnet()
    prunables = attach_masks(model)
    with torch.no_grad():  # some masked-out weights, and BN statistics that are not the defaults
        prunables[1].mask[0].fill_(False)
        apply_masks(prunables)
        bn = model[1]
        assert isinstance(bn, nn.BatchNorm2d)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.normal_()
    model.train()
    model[3].eval()  # mixed modes must come back per module
    model[0].bias.requires_grad_(False)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    ptrs = [p.data_ptr() for p in model.parameters()]

    scores = SCORERS[scorer](model, prunables, data(), gen())

    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) and after[k].dtype == dtypes[k] for k in state)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(p.grad is None for p in model.parameters())
    assert len(scores) == len(prunables)
    for s, p in zip(scores, prunables, strict=True):
        assert s.shape == p.param.shape and s.dtype in (torch.float32, torch.float64)
        assert bool(torch.isfinite(s).all())
        assert scorer == "grasp" or bool((s >= 0).all())  # GraSP's w * Hg is signed
    if scorer in ("mag", "snip", "synflow"):  # zero weights score zero
        assert bool((scores[1][0] == 0).all())
    assert any(bool((s > 0).any()) for s in scores)


@pytest.mark.parametrize("scorer", ["rand", "snip"])
def test_same_seed_same_masks(scorer: str) -> None:
    a, _ = run(convnet(), scorer, 1.0, iterations=3, seed=7)
    b, _ = run(convnet(), scorer, 1.0, iterations=3, seed=7)
    assert all(torch.equal(x.mask, y.mask) for x, y in zip(a, b, strict=True))
    if scorer == "rand":
        c, _ = run(convnet(), scorer, 1.0, iterations=3, seed=8)
        assert not all(torch.equal(x.mask, y.mask) for x, y in zip(a, c, strict=True))


def test_snip_is_gradient_times_weight() -> None:
    model = convnet()
    prunables = attach_masks(model)
    x, y = data()
    scores = SCORERS["snip"](model, prunables, (x, y), gen())
    model.eval()
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [p.param for p in prunables])
    for s, g, p in zip(scores, grads, prunables, strict=True):
        torch.testing.assert_close(s, (g * p.param).abs().detach())


def test_grasp_is_weight_times_hessian_gradient() -> None:
    # Independent computation with torch.func: H g by a Hessian-vector product.
    model = convnet()
    prunables = attach_masks(model)
    x, y = data()
    scores = SCORERS["grasp"](model, prunables, (x, y), gen())
    model.eval()
    names = [p.name for p in prunables]
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in names}
    weights = tuple(p.param.detach() for p in prunables)

    def loss(*ws: Tensor) -> Tensor:
        params = dict(fixed, **dict(zip(names, ws, strict=True)))
        out = torch.func.functional_call(model, params, (x,))
        return nn.functional.cross_entropy(out / grasp.TEMPERATURE, y)

    leaves = tuple(w.clone().requires_grad_() for w in weights)
    g = tuple(t.detach() for t in torch.autograd.grad(loss(*leaves), leaves))
    _, hg = torch.autograd.functional.hvp(loss, weights, g)
    for s, w, h in zip(scores, weights, hg, strict=True):
        torch.testing.assert_close(s, w * h, rtol=1e-4, atol=1e-6 * float(h.abs().max()))
    assert any(bool((s < 0).any()) for s in scores)  # signed: nothing shifted or clamped
    # Keeping the highest w*Hg removes the highest GraSP score -w*Hg, as the paper prescribes.
    got = torch.cat([s.reshape(-1) for s in scores])
    expected = torch.cat([(w * h).reshape(-1) for w, h in zip(weights, hg, strict=True)])
    assert int(got.argmax()) == int(expected.argmax())


def test_synflow_matches_path_flow_and_ignores_biases_and_bn_shift() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    prunables = attach_masks(model)
    w1, w2 = model[0].weight.detach().abs(), model[3].weight.detach().abs()
    var = model[1].running_var
    scale = model[1].weight.detach().abs() / torch.sqrt(var + model[1].eps)
    batch = (torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
    # R = 1' |W2| diag(s) |W1| 1: flow through w1[i, j] = |w1[i, j]| * s_i * sum_k |w2[k, i]|.
    expected1 = w1 * (scale * w2.sum(0)).unsqueeze(1)
    expected2 = w2 * (scale * w1.sum(1)).unsqueeze(0)
    scores = SCORERS["synflow"](model, prunables, batch, gen())
    torch.testing.assert_close(scores[0].double(), expected1.double())
    torch.testing.assert_close(scores[1].double(), expected2.double())
    with torch.no_grad():  # biases, BN shift and running mean must change nothing
        model[0].bias.fill_(5.0)
        model[3].bias.fill_(-7.0)
        model[1].bias.fill_(3.0)
        model[1].running_mean.fill_(2.0)
    again = SCORERS["synflow"](model, prunables, batch, gen())
    assert all(torch.equal(a, b) for a, b in zip(scores, again, strict=True))


def test_synflow_scores_prunable_biases_by_their_flow() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    prunables = attach_masks(model, include_bias=True)
    names = [p.name for p in prunables]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    scores = SCORERS["synflow"](model, prunables, (torch.zeros(1, 5), torch.zeros(1)), gen())
    b1, w2 = model[0].bias.detach().abs(), model[2].weight.detach().abs()
    torch.testing.assert_close(scores[1].double(), (b1 * w2.sum(0)).double())
    torch.testing.assert_close(scores[3].double(), model[2].bias.detach().abs().double())


def test_synflow_with_a_shared_weight_sums_both_uses() -> None:
    torch.manual_seed(5)
    shared = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(4, 2, bias=False))
    prunables = attach_masks(model)
    assert len(prunables) == 2  # the shared layer is one prunable
    scores = SCORERS["synflow"](model, prunables, (torch.zeros(1, 4), torch.zeros(1)), gen())
    w = shared.weight.detach().abs().double().requires_grad_()
    v = model[4].weight.detach().abs().double()
    flow = (v @ (w @ (w @ torch.ones(4, dtype=torch.float64)))).sum()
    (grad,) = torch.autograd.grad(flow, w)
    torch.testing.assert_close(scores[0].double(), (w * grad).detach())


def test_iterative_synflow_avoids_the_layer_collapse_of_single_shot() -> None:
    batch = (torch.zeros(2, 16), torch.zeros(2, dtype=torch.long))
    once, _ = run(deep_narrow(), "synflow", 2.0, iterations=1, batch=batch)
    many, _ = run(deep_narrow(), "synflow", 2.0, iterations=100, batch=batch)
    assert counts(once) == counts(many) == (3936, 39)
    assert not all(torch.equal(a.mask, b.mask) for a, b in zip(once, many, strict=True))
    assert min(int(p.mask.sum()) for p in once) == 0  # single shot empties a layer
    assert min(int(p.mask.sum()) for p in many) > 0  # iterative keeps every layer connected


def test_synflow_is_finite_on_resnet110_where_float32_overflows() -> None:
    from prunetui.core.models import build_model

    # Depth, not resolution, drives the overflow: an 8x8 input keeps the test fast.
    shape = (3, 8, 8)
    torch.manual_seed(0)
    model = build_model("resnet110", shape, 10)
    prunables = attach_masks(model)
    scores = SCORERS["synflow"](model, prunables, data(1, shape), gen())
    assert all(bool(torch.isfinite(s).all()) for s in scores)
    assert all(bool((s > 0).any()) for s in scores)

    # The straightforward float32 linearization of the same net overflows.
    naive = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in naive.named_parameters():
            p.copy_(torch.zeros_like(p) if name.endswith("bias") else p.abs())
        for m in naive.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
        flow = naive(torch.ones((1, *shape))).sum()
    assert not bool(torch.isfinite(flow))


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_synflow_iteration_memory_on_vgg16() -> None:
    """Peak extra resident memory of one SynFlow pruning iteration <= 4x the float32 weights."""
    clear = Path("/proc/self/clear_refs")
    try:
        libc = ctypes.CDLL("libc.so.6")
        clear.write_text("5")  # resets the peak-RSS mark (Linux >= 4.0)
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs and glibc to measure peak memory")
    from prunetui.core.models import build_model

    torch.manual_seed(0)
    model = build_model("vgg16", (3, 32, 32), 10)
    prunables = attach_masks(model)
    batch = data(2, (3, 32, 32))
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    prune(model, prunables, "synflow", 0.05, iterations=1, batch=batch, generator=gen())  # warm
    gc.collect()
    libc.malloc_trim(0)  # hand freed heap back, so that reuse cannot hide new allocations
    base = _rss_kib("VmRSS")
    clear.write_text("5")
    prune(model, prunables, "synflow", 0.1, iterations=1, batch=batch, generator=gen())
    extra = (_rss_kib("VmHWM") - base) * 1024
    assert counts(prunables)[1] == kept_count(counts(prunables)[0], 0.1)
    assert extra <= 4 * param_bytes, f"{extra / param_bytes:.2f}x the parameter bytes"


# --- GraSP with a prior mask --------------------------------------------------------------


def test_grasp_with_a_mask_equals_the_masked_forward_reference() -> None:
    # The reference multiplies each weight by its mask in the forward pass, so g and H live on
    # the kept weights. Iterative GraSP scores a model whose pruned weights are zero but
    # still have a gradient: it must give the reference's scores all the same.
    model = deep_narrow(2)
    prunables = attach_masks(model)
    g = gen(3)
    with torch.no_grad():
        for p in prunables:
            p.set_mask(torch.rand(p.mask.shape, generator=g) >= 0.5)
        apply_masks(prunables)
    x, y = data(16, (16,), 4)
    scores = SCORERS["grasp"](model, prunables, (x, y), gen())
    model.eval()
    names = [p.name for p in prunables]
    masks = [p.mask.to(torch.float32) for p in prunables]
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in names}
    weights = tuple(p.param.detach() for p in prunables)

    def loss(*ws: Tensor) -> Tensor:
        masked = (w * m for w, m in zip(ws, masks, strict=True))
        params = dict(fixed, **dict(zip(names, masked, strict=True)))
        out = torch.func.functional_call(model, params, (x,))
        return nn.functional.cross_entropy(out / grasp.TEMPERATURE, y)

    leaves = tuple(w.clone().requires_grad_() for w in weights)
    g_ref = tuple(t.detach() for t in torch.autograd.grad(loss(*leaves), leaves))
    _, hg = torch.autograd.functional.hvp(loss, weights, g_ref)
    expected = [w * h for w, h in zip(weights, hg, strict=True)]
    scale = max(float(e.abs().max()) for e in expected)
    for s, e in zip(scores, expected, strict=True):
        torch.testing.assert_close(s, e, rtol=1e-4, atol=1e-5 * scale)
    # The unmasked g (the old formulation) gives other scores on kept weights: the test can
    # tell the two apart.
    old = torch.cat([s.reshape(-1) for s in _grasp_unmasked_g(model, prunables, x, y)])
    assert not torch.allclose(old, torch.cat([e.reshape(-1) for e in expected]), rtol=1e-2)


def _grasp_unmasked_g(model: nn.Module, prunables: list[Prunable], x: Tensor,
                      y: Tensor) -> list[Tensor]:
    """GraSP as it was before masks were applied to g, step for step."""
    params = [p.param for p in prunables]
    with scoring_state(model, params):
        loss = nn.functional.cross_entropy(model(x) / grasp.TEMPERATURE, y)
        g = [t.detach() for t in torch.autograd.grad(loss, params)]
        loss = nn.functional.cross_entropy(model(x) / grasp.TEMPERATURE, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        z = sum(((gc * gr).sum() for gc, gr in zip(g, grads, strict=True)),
                torch.zeros(()))
        hg = torch.autograd.grad(z, params)
    return [h.detach() * p.detach() for h, p in zip(hg, params, strict=True)]


def test_grasp_without_a_mask_is_exactly_as_before() -> None:
    # All-True masks: g * 1 is g bit for bit, so the first (or only) GraSP step is unchanged.
    model = convnet()
    prunables = attach_masks(model)
    x, y = data()
    scores = SCORERS["grasp"](model, prunables, (x, y), gen())
    old = _grasp_unmasked_g(model, prunables, x, y)
    assert all(torch.equal(a, b) for a, b in zip(scores, old, strict=True))


# --- the inversion ablation ---------------------------------------------------------------


def _reverse_reference(scores: list[Tensor], k: int) -> Tensor:
    """Bottom k by the exact reverse of (score descending, position ascending): score
    ascending, position descending, via a full stable sort."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    n = flat.numel()
    # Sorting the flipped tensor ascending (stable) puts equal scores in descending position.
    order = torch.sort(flat.flip(0), stable=True).indices[:k]
    keep = torch.zeros(n, dtype=torch.bool)
    keep[n - 1 - order] = True
    return keep


def _signed_scores(prunables: list[Prunable], seed: int) -> list[Tensor]:
    """GraSP-like scores: mostly negative, of either sign, with many ties."""
    g = gen(seed)
    return [torch.randint(-40, 5, p.param.shape, generator=g).double() / 7 for p in prunables]


@pytest.mark.parametrize("c", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("scope", ["global", "local"])
def test_invert_keeps_the_lowest_ranked_with_exact_counts(
    monkeypatch: pytest.MonkeyPatch, scope: str, c: float
) -> None:
    model = convnet()
    prunables = attach_masks(model)
    scores = _signed_scores(prunables, 4)
    monkeypatch.setitem(SCORERS, "fixed", _Fixed(scores))
    prune(model, prunables, "fixed", c, scope=scope, iterations=1, batch=None,
          generator=gen(), invert=True)
    inverted = [p.mask.clone() for p in prunables]
    normal_model = convnet()
    normal = attach_masks(normal_model)
    prune(normal_model, normal, "fixed", c, scope=scope, iterations=1, batch=None,
          generator=gen())
    total = counts(prunables)[0]
    k = kept_count(total, c)
    assert sum(int(m.sum()) for m in inverted) == k
    # The same count per layer as the normal ranking under this scope, when it fixes one.
    if scope == "local":
        assert [int(m.sum()) for m in inverted] == [int(p.mask.sum()) for p in normal]
        for m, s in zip(inverted, scores, strict=True):
            want = _reverse_reference([s], int(m.sum()))
            assert torch.equal(m.reshape(-1), want)
    else:
        got = torch.cat([m.reshape(-1) for m in inverted])
        assert torch.equal(got, _reverse_reference(scores, k))
        # Exactly the complement of what the normal ranking keeps of total - k.
        assert torch.equal(got, ~_reference(scores, total - k))
    if k <= total // 2 and scope == "global":  # bottom k and top k cannot overlap
        assert not any(bool((m & p.mask).any()) for m, p in zip(inverted, normal, strict=True))


def test_invert_selection_with_pruned_entries_matches_a_full_sort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sampled path (tiny limits force it), ties, and entries already pruned holding any
    # value: they are neither kept nor counted.
    monkeypatch.setattr(schedule, "_DIRECT_LIMIT", 8)
    monkeypatch.setattr(schedule, "_SAMPLE", 16)
    monkeypatch.setattr(schedule, "_RUN", 4)
    g = gen(9)
    for trial in range(20):
        sizes = [int(v) for v in torch.randint(1, 300, (3,), generator=g)]
        values = [torch.randint(-20, [2, 30][trial % 2], (n,), generator=g).double()
                  for n in sizes]
        lives = [torch.rand(v.shape, generator=g) >= 0.4 for v in values]
        alive = [int(live.sum()) for live in lives]
        # Pruned entries rank above everything in the reverse order: they can never be kept.
        ranked = [torch.where(live, v, math.inf) for v, live in zip(values, lives, strict=True)]
        for k in sorted({0, 1, sum(alive) // 3, max(sum(alive) - 1, 0), sum(alive)}):
            outs = [torch.empty(v.shape, dtype=torch.bool) for v in values]
            kept = schedule._keep(values, k, outs, lives, alive, invert=True)
            assert torch.equal(torch.cat(outs), _reverse_reference(ranked, k)), (trial, k)
            assert kept == [int(o.sum()) for o in outs]


def test_iterative_invert_inverts_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each step keeps the lowest-ranked of the entries still live, by that step's scores.
    model = deep_narrow()
    prunables = attach_masks(model)
    seen: list[tuple[list[Tensor], list[Tensor]]] = []

    def recording(model: nn.Module, prunables: list[Prunable],
                  batch: tuple[Tensor, Tensor] | None, generator: torch.Generator) -> list[Tensor]:
        scores = SCORERS["synflow"](model, prunables, batch, generator)
        seen.append(([p.mask.clone() for p in prunables], [s.clone() for s in scores]))
        return scores

    monkeypatch.setitem(SCORERS, "recording", recording)
    steps: list[list[Tensor]] = []
    prune(model, prunables, "recording", 1.5, iterations=4, batch=data(2, (16,), 4),
          generator=gen(), invert=True,
          on_step=lambda i, n, d: steps.append(mask_list(prunables)))
    ks = kept_schedule(counts(prunables)[0], 1.5, "exponential", 4)
    assert len(seen) == 4 and counts(prunables)[1] == ks[-1]
    for (lives, scores), after, k in zip(seen, steps, ks, strict=True):
        ranked = [torch.where(live, s, math.inf) for live, s in zip(lives, scores, strict=True)]
        assert torch.equal(torch.cat([m.reshape(-1) for m in after]),
                           _reverse_reference(ranked, k))


# --- layerwise random baselines -----------------------------------------------------------


def fc3() -> nn.Module:
    """Linear 4->8->8->2: 32 + 64 + 16 = 112 weights."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def conv3() -> nn.Module:
    """Conv 3->4 and 4->8 (3x3), linear 32->10: 108 + 288 + 320 = 716 weights."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(32, 10))


def test_er_densities_on_an_fc_net_by_hand() -> None:
    p = attach_masks(fc3())
    # (n_in + n_out) / (n_in n_out): 12/32, 16/64, 10/16; times the sizes: 12, 16, 10 (sum 38).
    # k = 19: scale 1/2, densities 3/16, 1/8, 5/16 of 32, 64, 16.
    assert LAYERWISE["er"](p, 19) == [6, 8, 5]
    assert LAYERWISE["er"](p, 57) == [18, 24, 15]  # scale 3/2
    # k = 80: scale 80/38 puts the last layer at 25/19 > 1: it is kept dense (16), and the
    # other 64 are re-scaled over 12 + 16 = 28: 32 * 3/8 * 64/28 = 27 3/7, 64 * 1/4 * 64/28 =
    # 36 4/7; the one left over goes to the larger remainder.
    assert LAYERWISE["er"](p, 80) == [27, 37, 16]
    # An fc net has no kernel terms: ERK is ER.
    assert all(LAYERWISE["erk"](p, k) == LAYERWISE["er"](p, k) for k in range(113))


def test_erk_and_er_densities_on_a_conv_net_by_hand() -> None:
    p = attach_masks(conv3())
    # ERK: (3+4+3+3)/108, (4+8+3+3)/288, (32+10)/320; times the sizes: 13, 18, 42 (sum 73).
    assert LAYERWISE["erk"](p, 73) == [13, 18, 42]
    assert LAYERWISE["erk"](p, 146) == [26, 36, 84]
    # ER drops the kernel: 7/12, 12/32, 42/320; times the sizes: 63, 108, 42 (sum 213).
    assert LAYERWISE["er"](p, 213) == [63, 108, 42]
    # k = 600: scale 600/73 puts the linear layer over 1 (density 1.08): dense, 320. The 280
    # left over 13 + 18 = 31 give conv1 13/108 * 280/31 = 1.09 > 1: dense too, 108; conv2
    # takes the remaining 172 (density 0.60). The second cap only shows after the re-scale.
    assert LAYERWISE["erk"](p, 600) == [108, 172, 320]
    assert LAYERWISE["erk"](p, 716) == [108, 288, 320]
    assert LAYERWISE["erk"](p, 0) == [0, 0, 0]


def test_uniform_and_uniform_plus_by_hand() -> None:
    p = attach_masks(conv3())
    assert LAYERWISE["uniform"](p, 358) == [54, 144, 160]  # density 1/2 everywhere
    # k = 300: conv1 dense (108); 192 over the other 608 at density 192/608 >= 20%:
    # 288 * 192/608 = 90.95, 320 * 192/608 = 101.05 -> 91, 101.
    assert LAYERWISE["uniform-plus"](p, 300) == [108, 91, 101]
    # k = 200: 92/608 < 20%, so the last layer keeps ceil(320/5) = 64 and conv2 the other 28.
    assert LAYERWISE["uniform-plus"](p, 200) == [108, 28, 64]
    assert LAYERWISE["uniform-plus"](p, 172) == [108, 0, 64]
    # 108 + 64 = 172 is the least it can keep: fewer is refused, naming the largest
    # compression that fits: round(716 * 10^-0.62) = 172, round(716 * 10^-0.63) = 168.
    with pytest.raises(ConfigError, match=r"0\.weight dense \(108 weights\) and 20% of 6\.weight: "
                       r"172 of 716 .*at most 0\.62"):
        LAYERWISE["uniform-plus"](p, 171)
    assert kept_count(716, 0.62) == 172 and kept_count(716, 0.63) < 172


def test_uniform_plus_ignores_biases_for_first_and_last() -> None:
    # With prunable biases the first and last *layers* are the first and last weight
    # matrices; 1-D tensors share the common density.
    p = attach_masks(fc3(), include_bias=True)
    assert [q.name for q in p] == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                                   "4.bias"]
    counts_ = LAYERWISE["uniform-plus"](p, 60)
    assert counts_[0] == 32 and counts_[4] >= 4 and sum(counts_) == 60  # ceil(16 / 5) = 4


@pytest.mark.parametrize("rule", list(LAYERWISE))
def test_layerwise_counts_are_exact_and_within_layers(rule: str) -> None:
    for make in (fc3, conv3, deep_narrow):
        p = attach_masks(make())
        sizes = [q.param.numel() for q in p]
        for k in range(0, sum(sizes) + 1, 7):
            try:
                parts = LAYERWISE[rule](p, k)
            except ConfigError:
                assert rule == "uniform-plus"
                continue
            assert sum(parts) == k
            assert all(0 <= part <= n for part, n in zip(parts, sizes, strict=True))


@pytest.mark.parametrize("rule", list(LAYERWISE))
@pytest.mark.parametrize("c", [0.1, 0.5, 1.0])
def test_layerwise_pruning_keeps_the_rule_counts_at_random_positions(rule: str, c: float) -> None:
    model = conv3()
    prunables = attach_masks(model)
    total = counts(prunables)[0]
    if rule == "uniform-plus" and kept_count(total, c) < 172:
        with pytest.raises(ConfigError, match=rf"compression {c:g}: pruner uniform-plus"):
            prune(model, prunables, rule, c, iterations=1, batch=data(), generator=gen())
        return
    prune(model, prunables, rule, c, iterations=1, batch=data(), generator=gen(1))
    assert counts(prunables)[1] == kept_count(total, c)
    assert [int(q.mask.sum()) for q in prunables] == LAYERWISE[rule](
        prunables, kept_count(total, c))
    for q in prunables:
        assert bool((q.param[~q.mask] == 0).all())
    # Random positions from the pruning generator: same seed, same masks; another, others.
    again = attach_masks(conv3())
    prune(conv3_of(again), again, rule, c, iterations=1, batch=data(), generator=gen(1))
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(prunables, again, strict=True))
    other = attach_masks(conv3())
    prune(conv3_of(other), other, rule, c, iterations=1, batch=data(), generator=gen(2))
    assert not all(torch.equal(a.mask, b.mask) for a, b in zip(prunables, other, strict=True))


def conv3_of(prunables: list[Prunable]) -> nn.Module:
    """Any module: the layerwise pruners never call the model."""
    return prunables[0].module


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"scope": "local"}, "scope 'local' does not apply to pruner erk"),
     ({"iterations": 3}, "pruner erk prunes in one step"),
     ({"scorer_name": "uniform-plus", "compression": 2.0}, "at most 0.62")],
)
def test_layerwise_refusals_are_one_line(kwargs: dict[str, object], word: str) -> None:
    model = conv3()
    prunables = attach_masks(model)
    args: dict[str, object] = {"scorer_name": "erk", "compression": 1.0, "iterations": 1}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=re.escape(word)) as err:
        prune(model, prunables, batch=None, generator=gen(), **args)
    assert "\n" not in str(err.value)
    assert counts(prunables)[1] == counts(prunables)[0]  # refused before any pruning


def test_layerwise_counts_need_only_shapes() -> None:
    # validate() runs on a meta-device model: cheap for vgg19, before anything is written.
    with torch.device("meta"):
        model = conv3()
    prunables = find_prunable(model)
    schedule.validate(prunables, "erk", 1.0)
    assert LAYERWISE["erk"](prunables, 73) == [13, 18, 42]
    with pytest.raises(ConfigError, match="uniform-plus"):
        schedule.validate(prunables, "uniform-plus", 1.0)


# --- ablations through the engine --------------------------------------------------------


def _engine_prune(config: RunConfig) -> tuple[list[Prunable], dict[str, Tensor]]:
    """Build ``config``'s model, prune it as a run does; the prunables and their values from
    before pruning."""
    torch.manual_seed(config.seed)  # as a run seeds before its build
    model, prunables = run_build.build(config, torch.device("cpu"))
    before = snapshot(prunables)
    info = catalog.DATASETS[config.dataset]
    batch = (torch.ones((1, *info.shape)), torch.zeros(1, dtype=torch.long))
    run_build.prune_model(model, prunables, config, batch, gen(config.seed), ignore, None,
                           config.run_id)
    return prunables, before


@pytest.mark.parametrize("pruner", ["mag", "synflow"])
def test_shuffled_masks_keep_the_initial_values(pruner: str) -> None:
    # fc, Mag, c = 1: 11,940 of 119,400 kept. Pruning zeroes the rest, so shuffled positions
    # must take their values from before pruning, not from the pruned tensor (which started
    # most of the 11,940 kept weights at 0).
    config = RunConfig(model="fc", pruner=pruner, compression=1.0, prune_iterations=3)
    plain, _ = _engine_prune(config)
    shuffled, before = _engine_prune(config.with_(ablation="shuffle"))
    kept = 0
    for p, q in zip(plain, shuffled, strict=True):
        assert int(p.mask.sum()) == int(q.mask.sum())  # per-layer counts unchanged
        if 0 < int(p.mask.sum()) < p.mask.numel():  # (with fc's init, Mag empties layers.0)
            assert not torch.equal(p.mask, q.mask)  # positions moved
        assert torch.equal(q.param[q.mask], before[q.name][q.mask])
        assert bool((q.param[~q.mask] == 0).all())
        kept += int(q.mask.sum())
    assert kept == kept_count(119_400, 1.0) == 11_940
    assert sum(int(torch.count_nonzero(q.param)) for q in shuffled) == kept


def test_reinit_draws_every_parameter_from_a_second_build() -> None:
    config = RunConfig(model="conv", pruner="mag", compression=1.0)
    plain, before = _engine_prune(config)
    config = config.with_(ablation="reinit")
    torch.manual_seed(config.seed)
    model, prunables = run_build.build(config, torch.device("cpu"))
    info = catalog.DATASETS[config.dataset]
    batch = (torch.ones((1, *info.shape)), torch.zeros(1, dtype=torch.long))
    state = torch.get_rng_state()
    run_build.prune_model(model, prunables, config, batch, gen(config.seed), ignore, None, "x")
    # The second build draws from a stream of its own, seeded from the run's seed, and leaves
    # the global one as it was.
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(config.seed + run_build.REINIT_SEED_OFFSET)
    fresh = dict(build_model("conv", info.shape, info.num_classes).named_parameters())
    for p, q in zip(plain, prunables, strict=True):
        assert torch.equal(p.mask, q.mask)  # the mask is the one pruning chose
        assert torch.equal(q.param, fresh[q.name] * q.mask)  # kept: new values; pruned: 0
        assert not torch.equal(q.param[q.mask], before[q.name][q.mask])
    names = {q.name for q in prunables}
    others = [(n, p) for n, p in model.named_parameters() if n not in names]
    assert others  # biases: re-drawn with the rest of the network
    assert all(torch.equal(p, fresh[n]) for n, p in others)


def test_ablation_values_must_match_the_model() -> None:
    model = convnet()
    prunables = attach_masks(model)
    values = snapshot(prunables)
    with pytest.raises(ValueError, match=r"no value given for 0\.weight"):
        shuffle_masks(prunables, gen(), {k: v for k, v in values.items() if k != "0.weight"})
    with pytest.raises(ValueError, match="shape"):
        reinit_kept(model, prunables, {k: v.reshape(-1) for k, v in model.named_parameters()})


def test_inspect_with_a_layerwise_pruner() -> None:
    config = RunConfig(model="fc", pruner="erk", compression=1.0)
    result = run_build.inspect(config)
    assert result.structure.params.remaining == kept_count(119_400, 1.0)
    _, prunables = run_build.build(config, torch.device("cpu"))
    expected = LAYERWISE["erk"](prunables, kept_count(119_400, 1.0))
    assert [row.remaining for row in result.structure.layers] == expected
