"""The label2image task (issue 17): the SPADE student spec (exact MACs, the teacher's own layout
loads its weights), its width space and supernet, label-map data, and small end-to-end runs of
compress, eval, apply and export on a random SPADE teacher."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gancompress.arch.build import build_student
from gancompress.arch.cost import measure_macs, spec_macs
from gancompress.arch.spec import ArchSpec, spade_spec
from gancompress.errors import UserError


def _teacher_file(path, label_nc=8, ngf=4, hidden=8, seed=0):
    from safetensors.torch import save_file

    from gancompress.teachers.zoo_spade import SPADEGenerator

    torch.manual_seed(seed)
    g = SPADEGenerator(label_nc, ngf, hidden=hidden)
    g.train()
    with torch.no_grad():  # batch-norm statistics off their defaults
        g(torch.nn.functional.one_hot(torch.randint(0, label_nc, (2, 64, 64)), label_nc).permute(0, 3, 1, 2).float())
    g.eval()
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(path))
    return g


def _onehot(ids, c):
    return torch.nn.functional.one_hot(ids, c).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("hw", [(64, 64), (96, 160)])
def test_spec_macs_equal_flopcounter(hw):
    specs = [spade_spec(8, 16), spade_spec(5, 3, mids=[1, 2, 3, 4, 5, 6, 7], hiddens=[7, 6, 5, 4, 3, 2, 1]),
             spade_spec(12, 4, 9, norm="instance", ks=1)]
    for s in specs:
        assert spec_macs(s, hw) == measure_macs(build_student(s), hw)


def test_spec_json_round_trip_and_bad_specs():
    s = spade_spec(5, 3, mids=[1, 2, 3, 4, 5, 6, 7], hiddens=[7, 6, 5, 4, 3, 2, 1], norm="instance")
    assert ArchSpec.from_json(s.to_json()) == s
    assert "up_3: out 3, mid 7, hidden 1" in s.summary()
    d = s.to_dict()
    d["spade"]["blocks"] = d["spade"]["blocks"][:3]
    with pytest.raises(UserError, match="7 .out, mid, hidden. triples"):
        ArchSpec.from_dict(d)
    d = s.to_dict()
    d["spade"]["norm"] = "layer"
    with pytest.raises(UserError, match="spade.norm"):
        ArchSpec.from_dict(d)
    d = s.to_dict()
    del d["spade"]
    with pytest.raises(UserError, match="needs a 'spade' section"):
        ArchSpec.from_dict(d)


def test_student_with_the_teachers_widths_is_the_teacher(tmp_path):
    g = _teacher_file(tmp_path / "t.safetensors", label_nc=6, ngf=4, hidden=8)
    student = build_student(spade_spec(6, 4, 8)).eval()
    student.load_state_dict(g.state_dict())  # same names, same shapes
    x = _onehot(torch.randint(0, 6, (1, 64, 96)), 6)
    with torch.no_grad():
        assert (student(x) * 2 - 1 - g(x)).abs().max() < 1e-5


def test_width_space_configs_and_supernet_equal_extracted_students():
    from gancompress.methods.space import WidthSpace, WidthSupernet, frame_template
    from gancompress.methods.space import SpaceConfig

    space = WidthSpace(frame_template(SpaceConfig(nf=4), "label2image", 1, label_nc=5), 1, 1)
    assert space.names[:2] == ["trunk", "up_0.out"] and space.names[5] == "head_0.mid" and space.names[-1] == "up_3.hidden"
    torch.manual_seed(0)
    net = WidthSupernet(space).eval()
    x = _onehot(torch.randint(0, 5, (2, 64, 64)), 5)
    import random

    rng = random.Random(0)
    for config in [space.max_config(), space.min_config(), space.sample(rng), space.sample(rng)]:
        spec = space.spec(config)
        assert space.config_of(spec) == tuple(config)
        net.set_config(config)
        student = net.extract(config).eval()
        net.train()  # batch-norm statistics of this sub-network, then compare in eval mode
        with torch.no_grad():
            net(x)
            student.train()
            student(x)
        net.eval()
        student.eval()
        with torch.no_grad():
            a, b = net(x), student(x)
        assert (a - b).abs().max() < 1e-5
        assert spec_macs(spec) == measure_macs(student)


def test_slimming_gates_fold_exactly_into_the_extracted_student():
    from gancompress.methods.channels import kept_channels_quiet, widths_of, zero_cut_gates
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template
    from gancompress.methods.spade_gates import GatedSpade, extract_spade

    torch.manual_seed(0)
    space = WidthSpace(frame_template(SpaceConfig(nf=2), "label2image", 1, label_nc=5), 0, 0)
    gated = GatedSpade(space)
    x = _onehot(torch.randint(0, 5, (2, 64, 64)), 5)
    with torch.no_grad():
        gated.train()
        gated(x)  # batch-norm statistics
        for g in gated.gates:
            g.copy_(torch.randn_like(g))  # any sign and size
    kept = kept_channels_quiet(gated, 0.7)
    zero_cut_gates(gated, kept)
    plain, spec = extract_spade(gated.eval(), kept)
    assert widths_of(kept) != space.max_config() and spec.spade.fc == widths_of(kept)[0]
    with torch.no_grad():
        assert (gated(x) - plain.eval()(x)).abs().max() < 1e-5


def test_agd_supernet_masks_equal_the_sliced_student():
    from gancompress.arch.build import load_sliced
    from gancompress.methods.agd_spade import SpadeSupernet
    from gancompress.methods.space import SpaceConfig, WidthSpace, frame_template

    torch.manual_seed(0)
    space = WidthSpace(frame_template(SpaceConfig(nf=2), "label2image", 1, label_nc=5), 0, 0)
    net = SpadeSupernet(space)
    x = _onehot(torch.randint(0, 5, (2, 64, 64)), 5)
    idx = [len(c) // 2 for c in space.choices]
    with torch.no_grad():
        net.train()
        net(x, "fixed", fixed_widths=idx)  # batch-norm statistics through the masks
    net.eval()
    spec = net.spec_from_indices([], idx)
    student = build_student(spec).eval()
    load_sliced(student, net.net.state_dict())
    with torch.no_grad():
        assert (net(x, "fixed", fixed_widths=idx) - student(x)).abs().max() < 1e-5
    # the expected cost is the MACs when the choice is certain
    with torch.no_grad():
        for b, j in zip(net.betas, idx):
            b.fill_(-1e4)
            b[j] = 1e4
    with torch.no_grad():
        assert abs(net.expected_cost().item() - spec_macs(spec)) / spec_macs(spec) < 1e-5


def test_agd_keeps_the_best_candidate_not_the_last(tmp_path):
    """The SPADE space has widths but no operators; the search must still keep the candidate with
    the lowest validation loss (it kept the last one while the operator list was its marker)."""
    from dataclasses import replace

    from gancompress.budget import Budget
    from gancompress.methods.agd import search
    from gancompress.methods.space import SpaceConfig, frame_template

    cfg = replace(SpaceConfig(nf=4), warmup_steps=1, search_steps=4, eval_every=1, select_after=0.0, band=0.0)
    template = frame_template(cfg, "label2image", 1, label_nc=3)
    x = _onehot(torch.randint(0, 3, (2, 32, 32)), 3)
    batch = (x, torch.rand(2, 3, 32, 32))

    class Sampler:  # a checkpointed sampler's interface, always the same batch
        def next_batch(self):
            return batch

        def state_dict(self):
            return {}

        def load_state_dict(self, d):
            pass

    scripted = iter([0.5, 0.1, 0.9, 0.8])  # the validation losses of the 4 candidates, in order

    def loss(out, tgt):
        real = (out - tgt).abs().mean()
        return real if torch.is_grad_enabled() else real * 0 + next(scripted)

    res = search(cfg, template, Sampler(), Sampler(), batch, Budget.macs(1e12), tmp_path, loss, quiet=True)
    assert [round(e["val_loss"], 3) for e in res.history] == [0.5, 0.1, 0.9, 0.8]
    assert res.spec.meta["val_loss"] == pytest.approx(0.1)


def test_spade_teacher_is_expressible_as_a_student(tmp_path):
    from gancompress.teachers import load_teacher
    from gancompress.teachers.as_student import teacher_as_student

    _teacher_file(tmp_path / "t.safetensors", label_nc=6, ngf=4, hidden=8)
    t = load_teacher(f"spade:{tmp_path / 't.safetensors'}")
    spec, state = teacher_as_student(t)
    student = build_student(spec).eval()
    student.load_state_dict(state)
    x = _onehot(torch.randint(0, 6, (1, 64, 64)), 6)
    with torch.no_grad():
        assert (student(x) - t(x)).abs().max() < 1e-5


def _write_maps(folder, n, classes, size=64, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    for i in range(n):
        coarse = g.integers(0, classes, (size // 16, size // 16), dtype=np.uint8)
        Image.fromarray(np.kron(coarse, np.ones((16, 16), dtype=np.uint8)), mode="L").save(folder / f"m{i}.png")


def test_compress_eval_apply_export_end_to_end(tmp_path, capsys):
    """A tiny label2image run with user label maps (GAN Compression, then the uniform baseline at the
    same budget reusing nothing), then eval on another folder, apply on label maps, ONNX export."""
    from gancompress.api import compress, evaluate_run, upscale
    from gancompress.cli import main

    _teacher_file(tmp_path / "t.safetensors")
    _write_maps(tmp_path / "train", 4, 8, 96)
    _write_maps(tmp_path / "eval", 3, 8, 64, seed=1)
    common = dict(task="label2image", teacher=f"spade:{tmp_path / 't.safetensors'}", train_data=str(tmp_path / "train"),
                  eval_data=str(tmp_path / "eval"), budget="1/4", size=96, patch=64, search_patch=64, batch=2,
                  retrain_steps=4, latency_size=64, latency_repeats=1, quiet=True, nf=4)
    r = compress(method="ofa", ofa_steps=3, population=6, generations=1, out=str(tmp_path / "ofa"), **common)
    assert r.spec.task == "label2image" and r["within_budget"] and r["images"] == 3
    assert r["student_macs"] == r["student_macs_flopcounter"] <= r["budget_macs"]
    assert r["latency_input"] == "1x8x64x64"
    cfg = json.loads((tmp_path / "ofa" / "config.json").read_text())
    assert cfg["classes"] == 8 and cfg["method"] == "ofa"  # the teacher's classes, recorded
    u = compress(method="uniform", out=str(tmp_path / "uni"), **common)
    assert u.spec.spade.blocks[0][0] == 16 * u.spec.nf and u["within_budget"]
    # the teacher-target cache keeps the maps as class ids (an eighth of float one-hot's bytes per class)
    from gancompress.data.label_maps import load_label_folder, one_hot
    from gancompress.fileio import load_run_tensors

    cache = load_run_tensors(tmp_path / "uni" / "teacher_targets.safetensors")
    assert "0.lr" not in cache and cache["0.ids"].dtype == torch.uint8
    first = json.loads((tmp_path / "uni" / "teacher_targets.json").read_text())[0]
    maps = dict(load_label_folder(tmp_path / "train", 8, 96))
    assert torch.equal(one_hot(cache["0.ids"].long(), int(cache["0.classes"])), maps[first])
    from gancompress.data.run_data import teacher_targets

    names, pairs = teacher_targets(None, tmp_path / "uni", None, None)  # a resumed run reads the cache
    assert names[0] == first and torch.equal(pairs[0][0], maps[first]) and pairs[0][0].dtype == torch.float32
    a = compress(method="agd", warmup_steps=2, search_steps=4, search_batch=2, out=str(tmp_path / "agd"), **common)
    assert a["within_budget"] and a.spec.meta["method"] == "agd"
    assert json.loads((tmp_path / "agd" / "search" / "history.json").read_text())
    s = compress(method="slim", slim_steps=3, out=str(tmp_path / "slim"), **common)  # from the teacher's weights
    assert s["within_budget"] and s.spec.meta["method"] == "slim"
    assert json.loads((tmp_path / "slim" / "config.json").read_text())["slim"]["init"] == "teacher"
    ev = evaluate_run(r, str(tmp_path / "eval"))
    assert ev["images"] == 3 and abs(ev["psnr_to_teacher"] - r["psnr_to_teacher"]) < 1e-4
    # apply: a 70x50 map (not a multiple of 32) comes back at its own size
    Image.fromarray(np.zeros((50, 70), dtype=np.uint8) + 3, mode="L").save(tmp_path / "odd.png")
    out = upscale(str(tmp_path / "ofa"), [str(tmp_path / "odd.png")], str(tmp_path / "applied"), quiet=True)
    assert Image.open(out[0]).size == (70, 50) and out[0].endswith("odd_image.png")
    assert main(["apply", str(tmp_path / "ofa"), str(tmp_path / "ofa" / "report.html"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "cannot be read as an image" in capsys.readouterr().err
    # the ONNX input is the one-hot map, named "labels"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "ofa" / "student" / "student.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "labels" and sess.get_outputs()[0].name == "image"
    x = _onehot(torch.randint(0, 8, (1, 96, 64)), 8)
    with torch.no_grad():
        ref = r.student.eval()(x).numpy()
    assert np.abs(sess.run(None, {"labels": x.numpy()})[0] - ref).max() < 1e-4
    # int8: calibrated on the run's label maps (one-hot), measured against fp32; the report gains its sheets
    from gancompress.api import export_run

    q = export_run(str(tmp_path / "ofa"), int8=True)["int8"]
    assert q["int8_vs_fp32"] > 25 and q["latency_input"] == "1x8x256x256" and q["float_nodes"] == ["/conv_img/Conv"]
    assert "fp32 vs int8 (ONNX Runtime)" in (tmp_path / "ofa" / "report.html").read_text()
    crop = next((tmp_path / "ofa" / "crops").glob("worst1_*.png"))
    assert Image.open(crop).mode == "RGB"
    ids = np.asarray(Image.open(tmp_path / "ofa" / "crops" / "inputs" / crop.name))
    assert ids.ndim == 2 and ids.max() < 8  # the input kept as class ids


def test_refusals_are_one_line(tmp_path, capsys):
    from gancompress.cli import main

    _teacher_file(tmp_path / "t.safetensors")
    base = ["compress", "--task", "label2image", "--teacher", f"spade:{tmp_path / 't.safetensors'}", "--out",
            str(tmp_path / "r")]
    for extra, match in ((["--method", "prune"], "does not handle --task label2image yet; use --method agd or ofa or "
                                                 "slim or uniform"),
                         (["--budget", "40ms"], "latency budgets (ms) are not available for --task label2image"),
                         (["--method", "slim", "--bits", "8"], "--bits 8 is not available for --task label2image"),
                         (["--size", "100"], "multiple of 32"),
                         (["--patch", "48", "--method", "uniform"], "--patch must be a multiple of 32"),
                         (["--classes", "5", "--method", "uniform"], "reads 8 label channels but --classes is 5"),
                         (["--views", "3", "--method", "uniform"], "are for --task translate")):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)
    # a translation teacher asked to do label2image
    assert main(["compress", "--task", "label2image", "--teacher", "demo-translate", "--method", "uniform",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "use --task translate" in capsys.readouterr().err


def test_bundled_label_maps_are_deterministic_and_held_out():
    from gancompress.data.bundled_labels import bundled_label_maps

    a = bundled_label_maps("eval", 64, 8, views=2)
    b = bundled_label_maps("eval", 64, 8, views=2)
    assert [n for n, _ in a] == [n for n, _ in b] and all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    train = {n.split("@")[0] for n, _ in bundled_label_maps("train", 64, 8)}
    assert not train & {n.split("@")[0] for n, _ in a}
    ids = a[0][1]
    assert ids.shape == (64, 64) and ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 8


def test_train_teacher_label2image_writes_a_loadable_spade_file(tmp_path, capsys):
    from gancompress.cli import main
    from gancompress.teachers import load_teacher

    out = tmp_path / "spade.safetensors"
    assert main(["train-teacher", "--task", "label2image", "--steps", "2", "--ngf", "2", "--hidden", "4",
                 "--size", "64", "--crop", "64", "--batch", "2", "--views", "1", "--out", str(out), "-q"]) == 0
    t = load_teacher(f"spade:{out}")
    assert t.in_channels == 8 and t.info["ngf"] == 2 and t.info["hidden"] == 4 and t.info["norm"] == "batch"
    assert main(["train-teacher", "--task", "label2image", "--crop", "48", "--out", str(out)]) == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_instance_maps_are_the_edge_channel_end_to_end(tmp_path):
    """GauGAN's instance-edge channel: a teacher of 8 classes + 1 edge channel, instance maps named as
    the label maps; compress, the teacher-target cache, eval, apply and int8 export all carry it."""
    from gancompress.api import compress, evaluate_run, export_run, upscale
    from gancompress.data.label_maps import load_label_folder
    from gancompress.data.run_data import teacher_targets
    from gancompress.errors import UserError

    _teacher_file(tmp_path / "t.safetensors", label_nc=9)
    _write_maps(tmp_path / "train", 4, 8, 96)
    _write_maps(tmp_path / "eval", 3, 8, 64, seed=1)
    for split, size in (("train", 96), ("eval", 64)):  # instances: 32 px blocks, ids up to 40000 (16 bit)
        folder = tmp_path / f"{split}_inst"
        folder.mkdir()
        g = np.random.default_rng(7)
        for i in range(4 if split == "train" else 3):
            coarse = g.integers(0, 40000, (size // 32, size // 32)).astype(np.uint16)
            Image.fromarray(np.kron(coarse, np.ones((32, 32), dtype=np.uint16))).save(folder / f"m{i}.png")
    common = dict(task="label2image", teacher=f"spade:{tmp_path / 't.safetensors'}", train_data=str(tmp_path / "train"),
                  eval_data=str(tmp_path / "eval"), budget="1/4", size=96, patch=64, search_patch=64, batch=2,
                  retrain_steps=4, latency_size=64, latency_repeats=1, quiet=True, nf=4,
                  train_instances=str(tmp_path / "train_inst"), eval_instances=str(tmp_path / "eval_inst"))
    r = compress(method="uniform", out=str(tmp_path / "uni"), **common)
    assert r["within_budget"] and r.spec.spade.label_nc == 9 and r["latency_input"] == "1x9x64x64"
    cfg = json.loads((tmp_path / "uni" / "config.json").read_text())
    assert cfg["classes"] == 8 and cfg["train_instances"] == str(tmp_path / "train_inst")
    maps = dict(load_label_folder(tmp_path / "train", 8, 96, instances=tmp_path / "train_inst"))
    assert all(m.shape[0] == 9 and m[8].sum() > 0 for m in maps.values())  # the edges are there
    names, pairs = teacher_targets(None, tmp_path / "uni", None, None)  # the cache keeps ids + edges
    assert torch.equal(pairs[0][0], maps[names[0]])
    ev = evaluate_run(r, str(tmp_path / "eval"))  # the run's own eval maps: its instance maps too
    assert ev["images"] == 3 and abs(ev["psnr_to_teacher"] - r["psnr_to_teacher"]) < 1e-4
    (tmp_path / "other").mkdir()
    Image.open(tmp_path / "eval" / "m0.png").save(tmp_path / "other" / "m0.png")
    with pytest.raises(UserError, match="--eval-instances"):
        evaluate_run(r, str(tmp_path / "other"))
    out = upscale(str(tmp_path / "uni"), [str(tmp_path / "eval" / "m0.png")], str(tmp_path / "applied"), quiet=True,
                  instances=str(tmp_path / "eval_inst"))
    assert Image.open(out[0]).size == (64, 64)
    with pytest.raises(UserError, match="--instances"):
        upscale(str(tmp_path / "uni"), [str(tmp_path / "eval" / "m0.png")], str(tmp_path / "a2"), quiet=True)
    assert export_run(str(tmp_path / "uni"), int8=True)["int8"]["latency_input"] == "1x9x256x256"
    assert list((tmp_path / "uni" / "crops" / "inputs").glob("*.edges.png"))  # the int8 sheets read them back
    assert "fp32 vs int8 (ONNX Runtime)" in (tmp_path / "uni" / "report.html").read_text()
    # both folders or neither; a missing instance map is named
    with pytest.raises(UserError, match="--train-instances and --eval-instances"):
        compress(method="uniform", out=str(tmp_path / "x"), **{**common, "eval_instances": None})
    (tmp_path / "train_inst" / "m3.png").unlink()
    with pytest.raises(UserError, match="no instance map for label map m3.png"):
        compress(method="uniform", out=str(tmp_path / "y"), **common)
