"""Budgets in ms / MB at any size: the pieces a student is cut into, the latency table (cache hit,
miss, invalidation), budget parsing, and every method held to a latency budget on the predicted
model (a deterministic fake timer stands in for the runtime, except in the end-to-end run)."""

import json
import random

import pytest
import torch

from gancompress.arch.cost import measure_macs, spec_macs, spec_params
from gancompress.arch.pieces import spec_pieces
from gancompress.arch.spec import ArchSpec, LayerSpec, UpsamplerSpec, uniform_translate_spec
from gancompress.budget import Budget, parse_budget, parse_size, resolve_limit
from gancompress.errors import UserError
from gancompress.latency.table import LatencyTable

from conftest import tiny_config


def fake_ms(module, x, int8=False):
    """A deterministic stand-in for a runtime: 0.05 ms per call + 1 ms per million weight-pixels;
    an int8 piece: (time, share of its input conversion, share of its output conversion), half the
    float time plus a fixed 0.15 ms, so that narrow int8 layers are slower than float ones."""
    n = sum(p.numel() for p in module.parameters())
    ms = 0.05 + n * x.shape[-1] * x.shape[-2] / 1e6
    return (0.5 * ms + 0.15, 0.25, 0.125) if int8 else ms


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, module, x):
        self.calls += 1
        return fake_ms(module, x)


def fake_table(**kw):
    return LatencyTable("ort", 1, timer=fake_ms, rounds=1, **kw)


def random_sr_spec(rng, nf=8):
    cells = [[LayerSpec(rng.choice(["conv3x3", "resblock", "irb"]), rng.choice([3, 5, nf])),
              LayerSpec(rng.choice(["conv3x3", "conv1x1"]), nf)] for _ in range(2)]
    up = rng.choice([UpsamplerSpec(), UpsamplerSpec("progressive", 6)])
    return ArchSpec("sr", rng.choice([2, 4]), nf, cells, up, skip=rng.choice(["bicubic", "none"])).validate()


def random_translate_spec(rng, nf=8):
    spec = uniform_translate_spec(nf, 2, 2)
    spec.cells = [[LayerSpec(rng.choice(["conv3x3", "resblock"]), rng.choice([3, nf])), LayerSpec("conv3x3", nf)]
                  for _ in range(2)]
    spec.frame.up_kind = rng.choice(["deconv", "resize"])
    return spec.validate()


# ---- pieces --------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["sr", "translate", "sr unshuffled"])
def test_the_pieces_of_a_spec_are_the_whole_student(task):
    """Their MACs (FlopCounterMode, each piece alone) add up to the spec's, and their parameters to
    the built student's: nothing is left out or counted twice (an unshuffled SR student at a side
    it must pad too)."""
    rng = random.Random(0)
    for _ in range(4):
        spec = random_sr_spec(rng) if task != "translate" else random_translate_spec(rng)
        hw = (24, 32)
        if task == "sr unshuffled":
            spec.upsampler, spec.unshuffle = UpsamplerSpec(), rng.choice([2, 4])
            hw = (23, 30)
        pieces = spec_pieces(spec, hw)
        assert sum(measure_macs(p.build(), (p.h, p.w), p.cin) for p in pieces) == spec_macs(spec, hw)
        assert sum(sum(q.numel() for q in p.build().parameters()) for p in pieces) == spec_params(spec)
        assert len({p.key for p in pieces}) <= len(pieces)


# ---- the table -----------------------------------------------------------------------------------
def test_table_cache_hit_miss_and_invalidation(tmp_path):
    spec = random_sr_spec(random.Random(1))
    timer = Counting()
    a = LatencyTable("ort", 1, cache_dir=tmp_path, timer=timer, rounds=1)
    first = a.predict(spec, (16, 16))
    n = timer.calls
    # every piece, the call overhead and the canary (timed before each measurement: normalisation)
    assert set(a.entries) == {p.key for p in spec_pieces(spec, (16, 16))} | {"call-overhead", "canary"}
    assert n == 3 * (len(a.entries) - 1)
    again = LatencyTable("ort", 1, cache_dir=tmp_path, timer=timer, rounds=1)
    assert again.predict(spec, (16, 16)) == first and timer.calls == n  # a hit: nothing timed
    assert again.predict(spec, (16, 20)) and timer.calls > n  # another size is another set of pieces
    n = timer.calls
    for other in (LatencyTable("ort", 2, cache_dir=tmp_path, timer=timer, rounds=1),
                  LatencyTable("torch", 1, cache_dir=tmp_path, timer=timer, rounds=1)):
        assert other.path != a.path
        other.predict(spec, (16, 16))
        assert timer.calls > n  # another thread count or runtime is measured afresh
        n = timer.calls
    a.path.write_text("{ damaged")
    LatencyTable("ort", 1, cache_dir=tmp_path, timer=timer, rounds=1).predict(spec, (16, 16))
    assert timer.calls > n  # a damaged file is measured again, not an error
    data = json.loads(a.path.read_text())
    assert data["key"]["threads"] == 1 and data["key"]["runtime"] == "ort" and data["entries"]


def test_prediction_is_the_sum_of_pieces_with_one_call_overhead():
    t = fake_table()
    spec = random_sr_spec(random.Random(2))
    pieces = spec_pieces(spec, (16, 16))
    assert t.predict(spec, (16, 16)) == pytest.approx(sum(t.ms(p) for p in pieces) - (len(pieces) - 1) * t.overhead)


def test_real_ort_table_on_tiny_pieces(tmp_path):
    """The real runtime path (ONNX export of each piece, ORT session, threads) runs; a wider layer
    is not predicted faster than a much narrower one by a wide margin (timing noise aside)."""
    t = LatencyTable("ort", 1, cache_dir=tmp_path, rounds=1)
    spec = random_sr_spec(random.Random(3))
    assert t.predict(spec, (16, 16)) > 0 and t.measured > 0
    assert t.path.is_file()


def test_one_thread_is_timed_by_its_own_cpu_time_not_the_wall_clock():
    """At 1 thread on the CPU a measurement counts only the work of the thread that runs it: time
    the thread spends off the CPU (here, asleep; on a shared machine, queued behind other jobs)
    is not charged. With more threads, or on CUDA, the wall clock (the latency a user waits for)."""
    import time

    from gancompress.latency.runtimes import _min_ms, busy_clock

    assert busy_clock(2) is time.perf_counter and busy_clock(1, "cuda") is time.perf_counter
    clock = busy_clock(1)
    if clock is time.perf_counter:
        pytest.skip("this platform keeps thread CPU time only coarsely: the wall clock is used")
    idle = lambda: time.sleep(0.02)  # noqa: E731
    assert _min_ms(idle, warmup=0, repeats=2, clock=clock) < 5.0
    assert _min_ms(idle, warmup=0, repeats=2, clock=time.perf_counter) >= 19.0
    work = lambda: sum(i * i for i in range(200_000))  # noqa: E731 - busy: both clocks see it
    assert _min_ms(work, warmup=0, repeats=2, clock=clock) > 1.0


def _node(op, ts, dur):
    return {"cat": "Node", "name": f"{op}_{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_boundary_reorders_are_taken_off_and_inner_ones_kept():
    """Only a ReorderInput that runs first and a ReorderOutput that runs last are the piece's
    boundary; a reorder inside (before a pixel shuffle) is paid in the whole network too."""
    from gancompress.latency.runtimes import boundary_reorder_share, boundary_shares

    run = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
           _node("ReorderInput", 1, 10), _node("Conv", 12, 60), _node("ReorderOutput", 80, 15)]
    assert boundary_reorder_share(run) == pytest.approx(0.25)
    inner = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
             _node("ReorderInput", 1, 10), _node("Conv", 12, 50), _node("ReorderOutput", 70, 15),
             _node("DepthToSpace", 90, 5)]
    # a piece that leaves the blocked layout inside hands a plain tensor on: its neighbour pays a
    # reorder in the network too, so nothing is taken off
    assert boundary_reorder_share(inner) == 0.0
    assert boundary_shares(inner) == (pytest.approx(0.10), 0.0)
    assert boundary_reorder_share([{"cat": "Session", "name": "model_run", "ts": 0, "dur": 50},
                                   _node("Conv", 1, 40)]) == 0.0
    assert boundary_reorder_share([]) == 0.0
    # the median of the runs: one slow reorder does not decide
    runs = []
    for k, d in enumerate((10, 10, 60)):
        t0 = 1000 * k
        runs += [{"cat": "Session", "name": "model_run", "ts": t0, "dur": 100},
                 _node("ReorderInput", t0 + 1, d), _node("Conv", t0 + 70, 20), _node("ReorderOutput", t0 + 95, 5)]
    assert boundary_reorder_share(runs) == pytest.approx(0.15)
    # int8: quantize + transpose lead, dequantize trails, each its own share
    q = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, _node("QuantizeLinear", 1, 6),
         _node("Transpose", 8, 4), _node("QLinearConv", 13, 60), _node("Transpose", 80, 4),
         _node("QLinearLeakyRelu", 85, 5), _node("DequantizeLinear", 91, 3)]
    from gancompress.latency.runtimes import LEAD_OPS, TRAIL_OPS

    assert boundary_shares(q, LEAD_OPS, TRAIL_OPS) == (pytest.approx(0.10), pytest.approx(0.03))


def test_span_share_reads_the_middle_layer_of_a_chain():
    """An int8 layer timed inside a chain (two layers before it, one after) is charged the share
    of the run from its own conv up to the next layer's."""
    from gancompress.latency.runtimes import span_share

    run = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, _node("QuantizeLinear", 1, 2),
           _node("QLinearConv", 4, 10), _node("QLinearLeakyRelu", 15, 2),
           _node("QLinearConv", 18, 10), _node("QLinearLeakyRelu", 29, 2),
           _node("QLinearConv", 32, 30), _node("QLinearLeakyRelu", 63, 5),  # the layer
           _node("QLinearConv", 70, 10), _node("DequantizeLinear", 81, 3)]
    assert span_share(run, "QLinearConv", 2) == pytest.approx(0.35)
    assert span_share(run, "QLinearConv", 3) is None  # not the chain expected: the caller times it alone
    assert span_share([], "QLinearConv", 2) is None


def test_gap_share_reads_what_a_layer_costs_between_two_float_convs():
    """An int8 layer between float convs is charged from the float conv before it up to the one
    after: the float side's reorders, quantize, its kernels, dequantize."""
    from gancompress.latency.runtimes import gap_share

    run = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, _node("Conv", 1, 10),
           _node("FusedConv", 12, 10), _node("ReorderOutput", 23, 4), _node("QuantizeLinear", 28, 2),
           _node("QLinearConv", 31, 20), _node("DequantizeLinear", 52, 3), _node("ReorderInput", 56, 6),
           _node("Conv", 63, 10)]
    assert gap_share(run, ("Conv", "FusedConv"), 2, 3) == pytest.approx(0.35)
    assert gap_share(run, ("Conv", "FusedConv"), 2, 4) is None  # a float conv missing: not the chain expected
    assert gap_share([], ("Conv",), 1, 2) is None


def test_int8_ends_between_float_layers_are_what_the_span_costs_beyond_the_layer(monkeypatch):
    """The conversions of an int8 layer on the fp32 table are its span between float layers less
    its own time among int8 layers, split as the layer timed alone splits its ends."""
    from gancompress.arch.pieces import layer_piece

    t = LatencyTable("ort", 1, rounds=1)
    p = layer_piece("sr", "conv3x3@int8", 16, 16, False, (32, 32))
    asked = []

    def in_context(piece, rounds, neighbours="int8"):
        asked.append((piece.task, neighbours))
        return 9.0 if neighbours == "float" else 5.0

    monkeypatch.setattr(t, "_in_context", in_context)
    t.ensure([p])
    assert t.ms(p) == pytest.approx(5.0)
    lead, trail = t._shares[p.key]
    assert t.ms(p.conversion("in")) + t.ms(p.conversion("out")) == pytest.approx(4.0)
    if lead + trail > 0:
        assert t.ms(p.conversion("in")) == pytest.approx(4.0 * lead / (lead + trail))
    # translation's float layers (conv, instance norm, ReLU) are not one node: its ends stay as timed alone
    q = layer_piece("translate", "conv3x3@int8", 16, 16, False, (32, 32))
    t.ensure([q])
    assert ("translate", "float") not in asked and ("sr", "float") in asked


def test_a_real_ort_piece_is_priced_below_its_isolated_time_by_its_reorders():
    from gancompress.latency.runtimes import onnx_bytes, ort_boundary_share

    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    x = torch.rand(1, 16, 32, 32)
    share = ort_boundary_share(onnx_bytes(conv, x), x, threads=1)
    assert 0.0 <= share < 1.0


# ---- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,unit,value,fraction", [
    ("40ms", "ms", 40.0, None), ("0.04s", "ms", 40.0, None), ("2.5G", "MACs", 2.5e9, None),
    ("800M", "MACs", 8e8, None), ("1.5MB", "MB", 1.5, None), ("800KB", "MB", 0.8, None), ("4.5e9", "MACs", 4.5e9, None),
    ("1/10", "MACs", None, 0.1), ("0.1x", "MACs", None, 0.1), ("1/10:ms", "ms", None, 0.1), ("1/4:MB", "MB", None, 0.25),
    (" 40 ms ", "ms", 40.0, None)])
def test_budget_forms(text, unit, value, fraction):
    r = parse_budget(text)
    assert r.unit == unit
    if fraction is None:
        assert r.fraction is None and r.value == pytest.approx(value)
    else:
        assert r.value is None and r.fraction == pytest.approx(fraction)


@pytest.mark.parametrize("bad", ["40fps", "1/10:fps", "40ms:ms", "ms", "-3ms", "0MB", "1/0:ms", "0.5", "lots", ""])
def test_bad_budgets_are_one_line_errors(bad):
    with pytest.raises(UserError):
        parse_budget(bad)


def test_budget_sizes():
    assert parse_size("720x1280") == (720, 1280) and parse_size("256") == (256, 256)
    for bad in ("720*1280", "x", "4x4", "0x10", "axb", "1x2x3"):
        with pytest.raises(UserError, match="--budget-size"):
            parse_size(bad)


def test_relative_budget_needs_the_teacher_cost():
    with pytest.raises(UserError, match="relative to the teacher"):
        resolve_limit(parse_budget("1/10:ms"), None)
    assert resolve_limit(parse_budget("1/10:ms"), 50.0) == pytest.approx(5.0)


def test_a_macs_budget_at_another_size_scales_with_the_area():
    spec = random_sr_spec(random.Random(4))
    assert Budget.macs(1e12, (128, 256)).cost(spec) == spec_macs(spec, (128, 256)) == 2 * spec_macs(spec, (128, 128))


# ---- every method under a latency budget ---------------------------------------------------------
def ms_budget(limit, hw=(16, 16)):
    return Budget("ms", limit, hw, f"{limit}ms", fake_table())


def test_uniform_takes_the_widest_width_under_a_latency_budget():
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.config import task_config
    from gancompress.methods.space import uniform_spec_for_budget

    cfg = task_config("sr", quiet=True)
    s = cfg.search

    def at(w):
        return uniform_sr_spec(4, w, s.n_cells, s.n_layers, "conv3x3", upsampler=UpsamplerSpec(s.upsampler), skip=s.skip)

    b = ms_budget(0)
    b.limit = (b.cost(at(12)) + b.cost(at(13))) / 2
    spec = uniform_spec_for_budget(cfg, b)
    assert spec.nf == 12 and b.cost(spec) <= b.limit
    assert spec.meta["budget"]["unit"] == "ms" and spec.meta["cost"] <= b.limit


@pytest.mark.parametrize("task", ["sr", "translate"])
def test_agd_expected_latency_is_exact_for_a_certain_architecture(task):
    """With every choice certain (one-hot), the differentiable expected latency equals the table's
    prediction of that spec; repair brings any derived network under a latency budget."""
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.agd_supernet import repair_to_budget
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=8, n_cells=2, n_layers=2, ops=("conv3x3", "resblock"),
                      upsampler="pixelshuffle" if task == "sr" else "deconv")
    template = frame_template(cfg, task, 4 if task == "sr" else 1)
    b = ms_budget(1e9, (16, 16))
    net = make_supernet(cfg, template, b)
    rng = random.Random(0)
    with torch.no_grad():
        for _ in range(3):
            ops = [rng.randrange(2) for _ in net.layer_widths]
            ws = [rng.randrange(len(w)) for w in net.all_widths]
            net.alpha.copy_(torch.full_like(net.alpha, -1e4).scatter(1, torch.tensor(ops)[:, None], 1e4))
            for beta, w in zip([*net.betas, *net.frame_betas], ws):
                beta.copy_(torch.full_like(beta, -1e4).index_fill(0, torch.tensor([w]), 1e4))
            spec = net.spec_from_indices(ops, ws)
            assert float(net.expected_cost()) == pytest.approx(b.cost(spec), rel=1e-5)
    lo, hi = b.cost(net.min_spec()), b.cost(net.max_spec())
    limit = lo + 0.3 * (hi - lo)
    b.limit = limit
    ops, ws = repair_to_budget(net, [1] * len(net.layer_widths), [len(w) - 1 for w in net.all_widths], limit)
    assert b.cost(net.spec_from_indices(ops, ws)) <= limit


def test_int8_layers_pay_conversions_only_where_they_meet_float_ones():
    t = fake_table()
    cell = [LayerSpec("conv3x3@int8", 8), LayerSpec("resblock@int8", 5), LayerSpec("conv3x3", 8)]
    spec = ArchSpec("sr", 4, 8, [cell, [LayerSpec("conv3x3", 8), LayerSpec("conv3x3@int8", 8)]], UpsamplerSpec(),
                    skip="bicubic").validate()
    pieces = spec_pieces(spec, (16, 16))
    parts = [(p.option("op"), p.part) for p in pieces if p.part]
    # cell 0: quantize before layer 0, dequantize after layer 1 (layer 2 is float); cell 1: both
    # around its last layer (a cell's residual add is float)
    assert parts == [("conv3x3@int8", "in"), ("resblock@int8", "out"), ("conv3x3@int8", "in"),
                     ("conv3x3@int8", "out")]
    whole = [p for p in pieces if not p.part]
    assert t.predict(spec, (16, 16)) == pytest.approx(sum(t.ms(p) for p in pieces) - (len(whole) - 1) * t.overhead)
    i8 = next(p for p in whole if p.int8)
    assert t.ms(i8.conversion("in")) > 0 and t.ms(i8.conversion("out")) > 0
    # a size budget counts an int8 layer's weights as one byte each, its conversions as nothing
    mb = Budget("MB", 1.0, (16, 16), "1MB")
    fp = layer_piece_of(i8, "conv3x3")
    assert mb.piece_cost(i8) == pytest.approx(mb.piece_cost(fp) / 4) and mb.piece_cost(i8.conversion("in")) == 0


def layer_piece_of(piece, op):
    from dataclasses import replace

    return replace(piece, extra=tuple((k, op if k == "op" else v) for k, v in piece.extra))


def test_agd_expected_latency_prices_int8_conversions_exactly():
    """With --search-int8 under a latency budget the expected cost of a certain architecture is the
    table's prediction of it, conversions at every float/int8 meeting included."""
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=8, n_cells=2, n_layers=3, ops=("conv3x3", "resblock"), int8_search=True)
    template = frame_template(cfg, "sr", 4)
    b = ms_budget(1e9, (16, 16))
    net = make_supernet(cfg, template, b)
    assert any(o.endswith("@int8") for o in net.op_names)
    rng = random.Random(1)
    seen_conversions = 0
    with torch.no_grad():
        for _ in range(6):
            ops = [rng.randrange(len(net.op_names)) for _ in net.layer_widths]
            ws = [rng.randrange(len(w)) for w in net.all_widths]
            net.alpha.copy_(torch.full_like(net.alpha, -1e4).scatter(1, torch.tensor(ops)[:, None], 1e4))
            for beta, w in zip([*net.betas, *net.frame_betas], ws):
                beta.copy_(torch.full_like(beta, -1e4).index_fill(0, torch.tensor([w]), 1e4))
            spec = net.spec_from_indices(ops, ws)
            seen_conversions += sum(1 for p in spec_pieces(spec, (16, 16)) if p.part)
            assert float(net.expected_cost()) == pytest.approx(b.cost(spec), rel=1e-5)
    assert seen_conversions > 0


def test_a_candidate_keeps_only_the_int8_layers_that_lower_its_latency():
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.agd_supernet import INT8_MIN_SAVING, drop_useless_int8
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=8, n_cells=2, n_layers=3, ops=("conv3x3", "resblock"), int8_search=True)
    b = ms_budget(1e9, (16, 16))
    net = make_supernet(cfg, frame_template(cfg, "sr", 4), b)
    int8 = [o for o, name in enumerate(net.op_names) if name.endswith("@int8")]
    rng = random.Random(3)
    dropped = left = 0
    for _ in range(4):
        ops = [rng.choice(int8) for _ in net.layer_widths]
        ws = [rng.randrange(len(w)) for w in net.all_widths]
        before = b.cost(net.spec_from_indices(ops, ws))
        kept = drop_useless_int8(net, ops, ws)
        after = b.cost(net.spec_from_indices(kept, ws))
        n_dropped = sum(o not in int8 for o in kept)  # each costs at most the margin
        assert after <= before * (1 + INT8_MIN_SAVING) ** n_dropped
        for i, o in enumerate(kept):  # every int8 layer left pays: float costs more than the margin
            if o in int8:
                trial = kept.copy()
                trial[i] = net.op_names.index(net.op_names[o].replace("@int8", ""))
                assert b.cost(net.spec_from_indices(trial, ws)) > after * (1 + INT8_MIN_SAVING)
        dropped += sum(o not in int8 for o in kept)
        left += sum(o in int8 for o in kept)
    assert dropped and left  # this fake runtime makes narrow int8 layers slower, wide ones faster
    # the space's smallest network is no dearer than its all-float version (conversions counted)
    small = net.min_spec()
    floats = ArchSpec.from_dict(small.to_dict())
    for cell in floats.cells:
        for layer in cell:
            layer.op = layer.op.replace("@int8", "")
    assert b.cost(small) <= b.cost(floats)


def blocked_ms(module, x, int8=False):
    """A runtime with channel-blocked kernels (as ONNX Runtime's): each conv's channels are padded
    to a multiple of 8, and a width that is not one pays 50 % more, so a narrower layer can cost
    more than a wider one."""
    ms = 0.05
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            cin, cout = (-(-c // 8) * 8 for c in (m.in_channels, m.out_channels))
            odd = 1.5 if m.in_channels % 8 or m.out_channels % 8 else 1.0
            ms += odd * cin * cout * 9 * x.shape[-1] * x.shape[-2] / 1e6
    return ms


def test_a_candidate_is_widened_where_a_wider_layer_costs_no_more():
    """Under a latency budget AGD's candidate takes, at every layer, the widest choice the table
    prices no dearer (never raising the predicted cost); under a MACs budget nothing moves."""
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.agd_supernet import widen_free
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=16, n_cells=2, n_layers=3, ops=("conv3x3", "resblock"))
    b = Budget("ms", 1e9, (16, 16), "1e9ms", LatencyTable("ort", 1, timer=blocked_ms, rounds=1))
    net = make_supernet(cfg, frame_template(cfg, "sr", 4), b)
    rng = random.Random(0)
    moved = 0
    for _ in range(4):
        ops = [rng.randrange(len(net.op_names)) for _ in net.layer_widths]
        ws = [rng.randrange(len(w)) for w in net.all_widths]
        before = b.cost(net.spec_from_indices(ops, ws))
        wide = widen_free(net, ops, ws)
        after = b.cost(net.spec_from_indices(ops, wide))
        assert after <= before and all(a >= w for a, w in zip(wide, ws))
        moved += sum(a > w for a, w in zip(wide, ws))
        for i, widths in enumerate(net.all_widths):  # no wider choice left that costs no more
            for w in range(wide[i] + 1, len(widths)):
                trial = wide.copy()
                trial[i] = w
                assert b.cost(net.spec_from_indices(ops, trial)) > after
    assert moved
    macs = make_supernet(cfg, frame_template(cfg, "sr", 4), Budget("MACs", 1e12, (16, 16), "1000G"))
    ws = [0] * len(macs.all_widths)
    assert widen_free(macs, [0] * len(macs.layer_widths), ws) == ws


def test_spend_on_capacity_adds_macs_within_the_latency_budget_until_no_move_is_left():
    """`--spend-capacity`: from a narrow candidate, the pass ends within the budget with more MACs,
    and at a fixed point (no single operator or width move adds MACs without breaking the budget);
    a budget already spent leaves only the moves that add MACs for no time."""
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.agd_supernet import spend_on_capacity
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=16, n_cells=2, n_layers=3, ops=("conv3x3", "resblock"))
    b = Budget("ms", 1e9, (16, 16), "1e9ms", LatencyTable("ort", 1, timer=blocked_ms, rounds=1))
    net = make_supernet(cfg, frame_template(cfg, "sr", 4), b)
    ops, ws = [0] * len(net.layer_widths), [0] * len(net.all_widths)
    floor = b.cost(net.spec_from_indices(ops, ws))
    budget = floor * 1.3
    o2, w2 = spend_on_capacity(net, ops, ws, budget)
    spec = net.spec_from_indices(o2, w2)
    assert b.cost(spec) <= budget and spec_macs(spec) > spec_macs(net.spec_from_indices(ops, ws))
    for i, widths in enumerate(net.all_widths):
        for o in range(len(net.op_names)):
            for w in range(len(widths)):
                t_o, t_w = o2.copy(), w2.copy()
                t_o[i], t_w[i] = o, w
                trial = net.spec_from_indices(t_o, t_w)
                assert spec_macs(trial) <= spec_macs(spec) or b.cost(trial) > budget
    o3, w3 = spend_on_capacity(net, ops, ws, floor)  # no room: only free moves
    assert b.cost(net.spec_from_indices(o3, w3)) <= floor


def test_gan_compressions_evolution_scores_only_configs_no_free_widening_improves():
    """Under a latency budget the evolution's candidates are repaired before they are scored: no
    position is left narrower than a width the table prices no dearer (random draws do have such
    positions), the repair never breaks the budget, and under MACs it changes nothing."""
    from gancompress.methods.evolution import EvolutionConfig, evolve
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    space = WidthSpace(frame_template(SpaceConfig(nf=16), "sr", 4), 2, 2, "conv3x3")
    table = LatencyTable("ort", 1, timer=blocked_ms, rounds=1)
    probe = Budget("ms", 1e9, (16, 16), "1e9ms", table)
    lo, hi = (probe.cost(space.spec(c)) for c in (space.min_config(), space.max_config()))
    b = Budget("ms", lo + 0.6 * (hi - lo), (16, 16), "ms", table)

    def cost(c):
        return b.cost(space.spec(c))

    rng = random.Random(0)
    assert any(space.widen_free(c, cost) != c for c in (space.sample(rng) for _ in range(20)))
    res = evolve(space, lambda c: -sum(c), lambda c: b.fits(space.spec(c)),
                 EvolutionConfig(population=6, generations=3), repair=lambda c: space.widen_free(c, cost))
    scored = [space.parse(k) for k in res["cache"]]
    assert scored and all(b.fits(space.spec(c)) for c in scored)
    assert all(space.widen_free(c, cost) == c for c in scored)
    macs = Budget("MACs", 1e12, (16, 16), "1000G")
    c = space.min_config()
    assert space.widen_free(c, lambda w: macs.cost(space.spec(w))) == c


def test_width_spend_on_capacity_adds_macs_within_the_budget_to_a_fixed_point():
    """GAN Compression's capacity pass (widths only): from the smallest config it ends within the
    budget with more MACs, no single wider width then adds MACs within the budget, and a budget
    with no room leaves the config as it was."""
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    space = WidthSpace(frame_template(SpaceConfig(nf=24), "sr", 4), 2, 2, "conv3x3")
    table = LatencyTable("ort", 1, timer=blocked_ms, rounds=1)
    probe = Budget("ms", 1e9, (16, 16), "1e9ms", table)
    lo, hi = (probe.cost(space.spec(c)) for c in (space.min_config(), space.max_config()))
    limit = lo + 0.4 * (hi - lo)

    def cost(c):
        return probe.cost(space.spec(c))

    start = space.min_config()
    spent = space.spend_on_capacity(start, cost, limit)
    assert cost(spent) <= limit and spec_macs(space.spec(spent)) > spec_macs(space.spec(start))
    for i, ch in enumerate(space.choices):
        for w in ch:
            if w > spent[i]:
                trial = spent[:i] + (w,) + spent[i + 1:]
                assert cost(trial) > limit or spec_macs(space.spec(trial)) <= spec_macs(space.spec(spent))
    assert space.spend_on_capacity(start, cost, cost(start)) == start  # no room (no free move at the floor here)


@pytest.mark.parametrize("method, limit", [("ofa", 6.0), ("agd", 5.0)])
def test_a_trunk_that_must_narrow_takes_the_width_that_buys_the_most_macs_in_milliseconds(method, limit):
    """Under a latency budget a trunk the band rule would narrow (auto --nf) goes to the width whose
    space buys the most MACs within the budget, not the widest whose smallest network leaves the
    band free: with channel-blocked kernels the two differ (SRGAN x4, 1/32:ms, GAN Compression:
    nf 28 -> 2.3 G, nf 24 -> 4.3 G; 1/53:ms --widths 1, AGD: nf 8 -> 0.9 G, nf 16 -> 2.2 G).
    Under a MACs budget the band rule is unchanged."""
    from dataclasses import replace

    from gancompress.config import task_config
    from gancompress.methods.base import RunContext
    from gancompress.methods.registry import get_method
    from gancompress.methods.space import adapt_trunk_width

    cfg = task_config("sr", quiet=True)
    cfg = replace(cfg, method=method, search=replace(cfg.search, n_cells=2, n_layers=2))
    assert cfg.auto_nf and cfg.search.nf == 32
    m = get_method(method)
    b = Budget("ms", limit, (16, 16), f"{limit}ms", LatencyTable("ort", 1, timer=blocked_ms, rounds=1))

    def floor(c, nf):
        return m.smallest_network(c, nf, "ms") if method == "agd" else m.smallest_network(c, nf)

    notes = []
    ctx = RunContext(cfg, None, b)
    ctx.log = notes.append
    chosen = m.fit_to_budget(ctx).search.nf
    band = adapt_trunk_width(cfg, b, floor, log=lambda s: None).search.nf
    fits = [nf for nf in range(32, 7, -4) if b.cost(floor(cfg, nf)) <= b.limit]
    caps = {nf: m.capacity_in_budget(replace(cfg, search=replace(cfg.search, nf=nf)), nf, b) for nf in fits}
    assert caps[chosen] == max(caps.values()) and caps[chosen] > caps[band] and chosen != band
    assert notes and f"--nf {chosen}" in notes[0]
    unknown = adapt_trunk_width(cfg, b, floor, log=lambda s: None, capacity=lambda c, nf: None)
    assert unknown.search.nf == band  # no width's capacity known (SPADE students): the band rule decides
    macs = Budget.macs(0.4e9, (16, 16))
    assert m.capacity_in_budget(cfg, 32, macs) is None
    assert m.fit_to_budget(RunContext(cfg, None, macs)).search.nf == adapt_trunk_width(cfg, macs, m.smallest_network,
                                                                                       log=lambda s: None).search.nf


def test_the_trunk_narrowing_prices_the_float_floor_under_a_latency_budget():
    """With --search-int8, the smallest network priced in MACs is int8 everywhere (discounted), but
    in milliseconds its narrow layers are faster in float: the narrowing rule must use that floor,
    or it narrows the trunk too far (a 1/20:ms demo run went to nf 12 instead of 16)."""
    from dataclasses import replace

    from gancompress.config import task_config
    from gancompress.methods.agd import AGD

    cfg = task_config("sr")
    cfg = replace(cfg, search=replace(cfg.search, n_cells=2, n_layers=2, int8_search=True))
    macs_floor = AGD().smallest_network(cfg, 8)
    ms_floor = AGD().smallest_network(cfg, 8, "ms")
    assert all(layer.op.endswith("@int8") for _, _, _, layer in macs_floor.layers())
    assert not any(layer.op.endswith("@int8") for _, _, _, layer in ms_floor.layers())


def test_a_real_int8_piece_is_timed_quantized_with_its_conversions_apart():
    from gancompress.arch.pieces import layer_piece

    t = LatencyTable("ort", 1, rounds=1)
    p = layer_piece("sr", "conv3x3@int8", 16, 16, False, (32, 32))
    state = torch.get_rng_state()
    assert t.ms(p) > 0
    assert torch.equal(torch.get_rng_state(), state)  # a run's random stream does not depend on the cache
    assert t.ms(p.conversion("in")) >= 0 and t.ms(p.conversion("out")) >= 0
    assert 0 < t._context_shares[f"{p.key}|int8"] < 1  # its own time was read inside a chain of int8 layers
    # and its ends between float layers: the float convs' span around it covers its own time too
    assert 0 < t._context_shares[f"{p.key}|float"] < 1
    t8 = LatencyTable("ort-int8", 1, rounds=1)
    q = layer_piece("sr", "resblock", 16, 16, False, (32, 32))
    assert t8.ms(q) > 0 and 0 < t8._context_shares[f"{q.key}|int8"] < 1
    assert f"{q.key}|float" not in t8._context_shares  # a whole-int8 student has no float neighbours
    with pytest.raises(UserError, match="ONNX Runtime"):
        LatencyTable("torch", 1, rounds=1).ms(p)


def test_agd_search_steers_into_a_latency_budget(tmp_path):
    """A short search with the latency term (fake table): the derived network fits the budget."""
    from gancompress.data.patches import PatchSampler
    from gancompress.methods.agd import l1_loss, search
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = SpaceConfig(nf=8, n_cells=2, n_layers=2, patch=8, batch=2, warmup_steps=2, search_steps=8, eval_every=2)
    template = frame_template(cfg, "sr", 4)
    from gancompress.methods.agd import make_supernet

    net = make_supernet(cfg, template, ms_budget(1e9))
    b = ms_budget(1e9)
    lo, hi = b.cost(net.min_spec()), b.cost(net.max_spec())
    b.limit = lo + 0.4 * (hi - lo)
    torch.manual_seed(0)
    pairs = [(torch.rand(3, 16, 16), torch.rand(3, 64, 64)) for _ in range(2)]
    samplers = [PatchSampler(pairs, 8, 4, 2, seed=s) for s in (0, 1, 2)]
    val = samplers[2].next_batch()
    res = search(cfg, template, samplers[0], samplers[1], val, b, tmp_path, l1_loss, quiet=True)
    assert b.cost(res.spec) <= b.limit
    assert res.spec.meta["budget"]["unit"] == "ms" and res.spec.meta["cost"] <= b.limit
    # the same search (resumed from its finished checkpoint) without the capacity pass: the pass
    # only adds MACs, and the val_loss in the spec is the shipped network's, not the candidate's
    from dataclasses import replace

    plain = search(replace(cfg, spend_capacity=False), template, samplers[0], samplers[1], val, b, tmp_path,
                   l1_loss, quiet=True)
    assert res.spec.meta["macs"] > plain.spec.meta["macs"]  # here (0.39 -> 0.45 GMACs) the pass moves layers
    assert res.spec.meta["val_loss_before_capacity"] == pytest.approx(plain.spec.meta["val_loss"])
    net.load_state_dict(res.supernet_state)
    lr, tgt = val
    with torch.no_grad():
        shipped = l1_loss(net(lr, "fixed", "fixed", fixed_widths=res.w_idx, fixed_ops=res.op_idx), tgt).item()
    assert res.spec.meta["val_loss"] == pytest.approx(shipped)


def test_evolution_and_pruning_threshold_respect_a_latency_budget(tmp_path):
    from gancompress.methods.channels import GatedStudent, kept_channels, threshold_for_budget, widths_of
    from gancompress.methods.evolution import EvolutionConfig, evolve
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    space = WidthSpace(frame_template(SpaceConfig(nf=8), "sr", 4), 2, 2, "conv3x3")
    lo, hi = (ms_budget(0).cost(space.spec(c)) for c in (space.min_config(), space.max_config()))
    b = ms_budget(lo + 0.5 * (hi - lo))
    assert {p.key for p in space.pieces(b.hw)} >= {p.key for p in spec_pieces(space.spec(space.sample(random.Random(1))),
                                                                            b.hw)}
    res = evolve(space, lambda c: sum(c), lambda c: b.fits(space.spec(c)), EvolutionConfig(population=6, generations=3))
    assert all(b.fits(space.spec(tuple(int(v) for v in k.split("_")))) for k in res["cache"])
    g = GatedStudent(space)
    with torch.no_grad():
        for p in g.gate_parameters():
            p.copy_(torch.rand_like(p))
    t = threshold_for_budget(g, b)
    assert b.fits(space.spec(widths_of(kept_channels(g, t))))


def test_a_size_budget_counts_fp32_weights():
    spec = random_sr_spec(random.Random(5))
    b = Budget("MB", 1.0, (16, 16), "1MB")
    assert b.cost(spec) == pytest.approx(spec_params(spec) * 4 / 1e6)
    assert b.cost(spec) == b.pieces_cost(spec_pieces(spec, (64, 64)))  # the size does not depend on the input


# ---- end to end -----------------------------------------------------------------------------------
def test_compress_under_a_relative_latency_budget(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    """`--budget 1/3:ms --budget-size 32x32`: the teacher and the pieces are timed in ONNX Runtime,
    the search is held to the predicted latency, and metrics report prediction and measurement."""
    from gancompress.api import compress

    monkeypatch.setenv("GANCOMPRESS_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", budget="1/3:ms", budget_size="32x32")
    m = compress(cfg)
    b = m["budget"]
    assert b["unit"] == "ms" and b["runtime"] == "ort" and b["threads"] == 1 and b["size"] == "32x32"
    assert m["within_budget"] == (b["student"] <= b["limit"]) and m["within_budget"]
    assert b["student_measured"] > 0 and b["teacher"] > b["limit"]
    assert list((tmp_path / "cache" / "latency").glob("ort-1t-*.json"))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["budget"] == "1/3:ms" and saved["budget_size"] == "32x32" and saved["latency_threads"] == 1
    assert "budget" in (tmp_path / "run" / "report.md").read_text()


def test_mixed_precision_search_under_a_latency_budget(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    """`--search-int8 --budget 1/3:ms`: int8 pieces are timed quantized in ONNX Runtime, the derived
    student's int8 layers each lower its predicted latency, and the int8 export is measured too."""
    from dataclasses import replace

    from gancompress.api import compress
    from gancompress.arch.spec import ArchSpec

    monkeypatch.setenv("GANCOMPRESS_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", budget="1/3:ms", budget_size="32x32")
    cfg.search = replace(cfg.search, int8_search=True)
    m = compress(cfg)
    b = m["budget"]
    assert m["within_budget"] and b["student_measured"] > 0
    table = json.loads(next((tmp_path / "cache" / "latency").glob("ort-1t-*.json")).read_text())["entries"]
    assert any("@int8" in k and k.endswith("#in") for k in table)
    spec = ArchSpec.load(tmp_path / "run" / "student" / "spec.json")
    if any(layer.op.endswith("@int8") for _, _, _, layer in spec.layers()):
        assert m["int8"]["int8_bytes"] > 0 and b["student_measured_int8"] > 0


def test_latency_options_are_checked_before_anything_runs(tiny_teacher, tiny_data, tmp_path):
    from dataclasses import replace

    from gancompress.api import compress

    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", budget="40ms", latency_runtime="torch")
    cfg.search = replace(cfg.search, int8_search=True)
    with pytest.raises(UserError, match="--latency-runtime ort"):
        compress(cfg)
    assert not (tmp_path / "run").exists()
    for kw, match in ((dict(budget="40fps"), "budget"), (dict(budget_size="1x1"), "--budget-size"),
                      (dict(latency_runtime="tvm"), "--latency-runtime"), (dict(latency_threads=0), "--latency-threads")):
        with pytest.raises(UserError, match=match):
            compress(tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", **kw))
        assert not (tmp_path / "run").exists()


def test_a_torchscript_teacher_is_exported_for_onnx_runtime(tmp_path):
    """A black-box TorchScript teacher used to get no ONNX Runtime ratio ("could not be exported"):
    its own module is exported when its wrapper cannot be traced."""
    from torch import nn

    from gancompress.evaluate import teacher_onnx_path
    from gancompress.export.student import onnx_runner
    from gancompress.teachers import load_teacher

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    torch.jit.script(net).save(str(tmp_path / "t.ts"))
    teacher = load_teacher(str(tmp_path / "t.ts"), trust_code=True, value_range=(0, 1))
    path = teacher_onnx_path(teacher, tmp_path)
    assert path is not None and path.is_file()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(onnx_runner(path)(x), teacher.model(x), atol=1e-5)


@pytest.mark.parametrize("share,calls", [(1.0, 0), (0.0, 3)])
def test_slimming_stops_at_a_latency_budget(tmp_path, monkeypatch, share, calls):
    """GAN Slimming's --stop-at-budget asks the latency budget whether the live network fits."""
    from torch import nn

    from gancompress.data.patches import PatchSampler
    from gancompress.methods.channels import GatedStudent, live_spec
    from gancompress.methods.gan_slimming import SlimConfig, train_gated
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    torch.manual_seed(0)
    g = GatedStudent(WidthSpace(frame_template(SpaceConfig(nf=8), "sr", 4), 2, 2, "conv3x3"))
    b = ms_budget(0, (8, 8))
    b.limit = share * b.cost(live_spec(g))
    n = []
    monkeypatch.setattr(GatedStudent, "proximal_step", lambda self, t: n.append(t))
    sampler = PatchSampler([(torch.rand(3, 8, 8), torch.rand(3, 32, 32))], 8, 4, 2, seed=0)
    train_gated(SlimConfig(steps=3, lambda_gan=0.0, stop_at_budget=True), g, nn.L1Loss(), sampler,
                tmp_path / "s.ckpt", "cpu", quiet=True, budget=b)
    assert len(n) == calls


def test_the_teachers_time_is_kept_by_content_not_path_or_mtime(tmp_path, monkeypatch):
    """A copied or re-synced teacher file (new path, new mtime) reuses its timing; changed bytes are timed again."""
    import os
    from types import SimpleNamespace

    from gancompress.budget import teacher_latency_ms

    class Table:  # LatencyTable.cached without the file and the ranks
        def __init__(self):
            self.entries = {}

        def cached(self, key, measure):
            if key not in self.entries:
                self.entries[key] = measure()
            return self.entries[key]

    def teacher(path):
        return SimpleNamespace(source=str(path), kind_name="srgan")

    a, b, c = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    a.write_bytes(b"weights" * 100)
    b.write_bytes(a.read_bytes())
    os.utime(b, (1, 1))
    c.write_bytes(b"other" * 100)
    table, calls = Table(), []
    monkeypatch.setattr("gancompress.budget._time_teacher",
                        lambda t, tb, hw: calls.append(t.source) or 100.0 + len(calls))
    assert teacher_latency_ms(teacher(a), table, (8, 8)) == teacher_latency_ms(teacher(b), table, (8, 8)) == 101.0
    assert teacher_latency_ms(teacher(c), table, (8, 8)) == 102.0
    assert len(table.entries) == 2 and calls == [str(a), str(c)]


@pytest.mark.parametrize("method, budget", [("agd", "1/3:ms"), ("uniform", "1/4"), ("ofa", "1/4"), ("ofa", "1/3:ms"),
                                            ("slim", "1/4"), ("prune", "1/4")])
def test_every_method_compresses_an_unshuffled_student(method, budget, tiny_teacher, tiny_data, tmp_path, monkeypatch):
    """`--unshuffle 2`: each method's student runs its frame at half the LR side, is held to its
    budget (AGD: the predicted latency of that frame's pieces), and exports and evaluates at the
    eval images' sizes."""
    from dataclasses import replace

    from gancompress.api import compress
    from gancompress.arch.spec import ArchSpec

    monkeypatch.setenv("GANCOMPRESS_CACHE", str(tmp_path / "cache"))
    from gancompress.methods.evolution import EvolutionConfig
    from gancompress.methods.once_for_all import OFAConfig
    from gancompress.methods.gan_slimming import SlimConfig
    from gancompress.methods.prune import PruneConfig

    tiny = {"ofa": OFAConfig(steps=4, evolution=EvolutionConfig(population=6, generations=2)),
            "slim": SlimConfig(steps=6, rho=0.5), "prune": PruneConfig(steps=6)}
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", budget=budget, budget_size="32x32", method=method,
                      **({"method_options": tiny[method]} if method in tiny else {}))
    cfg.search = replace(cfg.search, unshuffle=2)
    m = compress(cfg)
    spec = ArchSpec.load(tmp_path / "run" / "student" / "spec.json")
    assert spec.unshuffle == 2 and m["within_budget"]
    if budget.endswith(":ms"):
        assert m["budget"]["student_measured"] > 0
        table = json.loads(next((tmp_path / "cache" / "latency").glob("ort-1t-*.json")).read_text())["entries"]
        assert any(k.startswith("sr/head/") and k.endswith("unshuffle=2") for k in table)
    if method == "ofa" and budget.endswith(":ms"):  # the capacity pass: what shipped is what it widened to
        info = json.loads((tmp_path / "run" / "search" / "ofa.json").read_text())
        moved = info["capacity"]
        assert moved is None or (moved["to"] == info["config"] and moved["to"] != moved["from"])


def test_an_int8_latency_budget_prices_the_int8_export(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    """`--latency-runtime ort-int8 --qat`: pieces are timed as the whole-model int8 export runs
    them (their own table file), the teacher in fp32 (so 1/3:ms is a third of the fp32 teacher),
    and the student is measured as its int8 export. Without --qat, or for translation, it is a
    clean error before anything runs."""
    from dataclasses import replace

    from gancompress.api import compress
    from gancompress.config import validate_options

    monkeypatch.setenv("GANCOMPRESS_CACHE", str(tmp_path / "cache"))
    kw = dict(budget="1/3:ms", budget_size="32x32", latency_runtime="ort-int8")
    with pytest.raises(UserError, match="add --qat"):
        validate_options(tiny_config(tiny_teacher, *tiny_data, tmp_path / "no", **kw))
    cfg = tiny_config(tiny_teacher, *tiny_data, tmp_path / "run", **kw)
    cfg.retrain = replace(cfg.retrain, qat=True)
    m = compress(cfg)
    b = m["budget"]
    assert b["runtime"] == "ort-int8" and m["within_budget"] and b["student_measured"] > 0
    files = list((tmp_path / "cache" / "latency").glob("ort-int8-1t-*.json"))
    assert len(files) == 1
    entries = json.loads(files[0].read_text())["entries"]
    assert any(k.startswith("teacher/") for k in entries) and any(k.startswith("sr/layer/") for k in entries)
    assert m["int8"]["int8_bytes"] > 0
    assert json.loads(files[0].read_text())["key"]["runtime"] == "ort-int8"
    assert isinstance(LatencyTable("ort", 1, cache_dir=None).key["isa"], list)  # VNNI or not: another table
