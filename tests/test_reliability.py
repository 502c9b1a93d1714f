"""Issue 13: the run lock, non-finite values, OS errors as one line, half-written files, checkpoint
checksums, and bounded memory in upscale/apply."""

import errno
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import interrupted_fit, tiny_config
from gancompress.cli import main
from gancompress.errors import UserError

TINY = ["--nf", "8", "--cells", "2", "--layers", "2", "--search-patch", "8", "--search-batch", "2",
        "--warmup-steps", "1", "--search-steps", "2", "--retrain-steps", "2", "--patch", "8", "--batch", "2",
        "--latency-size", "32", "--latency-repeats", "1", "--quiet", "--init-steps", "3"]


def error_lines(err):
    return [l for l in err.strip().splitlines() if l.startswith("error:")]


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def cli_args(tiny_teacher, tiny_data, tmp_path):
    train, evald = tiny_data

    def make(out=None, *extra, teacher=None):
        return ["compress", "--teacher", teacher or tiny_teacher, "--train-data", train, "--eval-data", evald,
                "--budget", "1/4", "--out", str(out or tmp_path / "run"), *TINY, *extra]
    return make


# ---- item 2: the run lock ---------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from gancompress.rundir import lock_run
    lock_run(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_live_run_locks_its_folder_and_a_killed_one_does_not(cli_args, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--force"]):  # a resume beside it, and a --force beside it
            code = main(cli_args(out, *extra))
            line = assert_one_line_error(code, capsys.readouterr().err, str(out), f"PID {holder.pid}")
            assert "in use" in line
        assert not (out / "config.json").exists()  # nothing was written by the refused runs
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock file stays with a dead PID in it
        holder.wait()
    assert (out / ".lock").read_text().strip() == str(holder.pid)
    assert main(cli_args(out)) == 0  # the OS released the lock: the run goes ahead
    assert (out / "report.md").is_file()
    # the run released its lock when it ended (in this process, too): another process can take it
    probe = subprocess.run([sys.executable, "-c", "import sys; from gancompress.rundir import lock_run; "
                            "lock_run(sys.argv[1])", str(out)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


def test_lock_is_reentrant_in_one_process_and_export_takes_it(tmp_path):
    from gancompress.rundir import lock_run, locked_run, release_run_locks, run_locks_scope

    with run_locks_scope():
        lock_run(tmp_path)
        lock_run(tmp_path)  # the same process: no deadlock, no error
        with locked_run(tmp_path):
            pass
        # still held after the inner scope: a second process is refused
        probe = subprocess.run([sys.executable, "-c", "import sys; from gancompress.rundir import lock_run; "
                                "lock_run(sys.argv[1])", str(tmp_path)], capture_output=True, text=True)
        assert probe.returncode != 0 and f"PID {os.getpid()}" in probe.stderr
    release_run_locks()


# ---- item 3: non-finite values ----------------------------------------------------------------
def test_a_teacher_that_outputs_nan_is_refused_naming_the_images(cli_args, tmp_path, capsys):
    from gancompress.teachers import RRDBNet, save_zoo_teacher

    torch.manual_seed(0)
    net = RRDBNet(nf=8, nb=1, gc=4, scale=4)
    with torch.no_grad():
        net.conv_last.weight[0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan_teacher.safetensors"
    save_zoo_teacher(net, path)
    code = main(cli_args(tmp_path / "r", teacher=f"esrgan:{path}"))
    line = assert_one_line_error(code, capsys.readouterr().err, "non-finite", "2 of 2")
    assert line.count(".png") == 2  # both training images are named
    assert not (tmp_path / "r" / "teacher_targets.safetensors").exists()


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4))


class _RecordingSGD(torch.optim.SGD):
    """Records the learning rate each step really uses (after every step hook)."""

    used: list

    def step(self, closure=None):
        self.used.append(self.param_groups[0]["lr"])
        return super().step(closure)


def _loop_objects(seed=0):
    from gancompress.distill.train import CosineLR

    torch.manual_seed(seed)
    m = _Model()
    opt = _RecordingSGD(m.parameters(), lr=0.1)
    opt.used = []
    sched = CosineLR(opt, 40, 0.1, 0.0)
    return m, opt, sched


def _trainer(m, opt, sched, poison, seen_lr):
    """SGD on a quadratic; `poison(i)` says whether step i produces a NaN loss (and weights)."""
    def step(i):
        loss = ((m.w - 1.0) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        seen_lr.append((i, opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        if poison(i):
            with torch.no_grad():
                m.w.fill_(float("nan"))
            return {"loss": float("nan")}
        return {"loss": loss.item()}
    return step


def _cosine(sched, k):
    return sched.min_lr + 0.5 * (sched.lr - sched.min_lr) * (1 + np.cos(np.pi * min(1.0, k / sched.steps)))


def test_nan_rolls_back_with_half_the_learning_rate(tmp_path, capsys):
    """A NaN at step 13 rolls back to the checkpoint at step 10 and continues at half the rate; the
    halving acts during optimizer.step() only, so the scheduler's own lr is untouched."""
    from gancompress.distill.loop import load_checkpoint, run_loop

    m, opt, sched = _loop_objects()
    hits, seen = [], []

    def poison(i):
        if i == 13 and not hits:
            hits.append(i)
            return True
        return False
    run_loop("t", 40, _trainer(m, opt, sched, poison, seen), {"m": m, "opt": opt, "sched": sched},
             tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    err = capsys.readouterr().err
    assert "rolled back to step 10" in err and "halved" in err and "rollback 1 of 3" in err
    assert torch.isfinite(m.w).all()
    steps = [i for i, _ in seen]
    assert steps == list(range(14)) + list(range(10, 40))  # steps 10.. run again after the rollback
    for i, lr in seen:  # what the scheduler set, before and after the rollback
        assert lr == pytest.approx(_cosine(sched, i)), i
    # what the optimizer stepped with: the schedule, then half of it
    assert opt.used == pytest.approx([lr * (1.0 if j < 14 else 0.5) for j, (_, lr) in enumerate(seen)])
    assert load_checkpoint(tmp_path / "a.ckpt")["guard"] == {"lr_scale": 0.5, "rollbacks": 1}


def test_the_halved_rate_survives_a_resume(tmp_path):
    from gancompress.distill.loop import run_loop

    m, opt, sched = _loop_objects()
    state = {"n": 0}

    def poison(i):
        if i == 7 and state["n"] == 0:
            state["n"] = 1
            return True
        if i == 22:
            raise KeyboardInterrupt
        return False
    with pytest.raises(KeyboardInterrupt):
        run_loop("t", 40, _trainer(m, opt, sched, poison, []), {"m": m, "opt": opt, "sched": sched},
                 tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    m2, opt2, sched2 = _loop_objects(seed=1)  # a new process
    seen = []
    run_loop("t", 40, _trainer(m2, opt2, sched2, lambda i: False, seen), {"m": m2, "opt": opt2, "sched": sched2},
             tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    assert seen[0][0] == 20
    assert opt2.used[0] == pytest.approx(0.5 * seen[0][1])


def test_three_rollbacks_then_a_clear_stop_and_a_resumable_state(tmp_path, capsys):
    from gancompress.distill.loop import load_checkpoint, run_loop

    m, opt, sched = _loop_objects()
    with pytest.raises(UserError) as e:
        run_loop("t", 40, _trainer(m, opt, sched, lambda i: i == 12, []), {"m": m, "opt": opt, "sched": sched},
                 tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    msg = str(e.value)
    assert "diverged" in msg and "after 3 rollbacks" in msg and "step 10" in msg and "a.ckpt" in msg
    assert capsys.readouterr().err.count("rolled back") == 3
    ck = load_checkpoint(tmp_path / "a.ckpt")
    assert ck["step"] == 10 and ck["guard"]["lr_scale"] == 1 / 16 and ck["guard"]["rollbacks"] == 0
    assert torch.isfinite(ck["state"]["m"]["w"]).all()
    m2, opt2, sched2 = _loop_objects()
    seen = []
    run_loop("t", 40, _trainer(m2, opt2, sched2, lambda i: False, seen), {"m": m2, "opt": opt2, "sched": sched2},
             tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    assert seen[0][0] == 10 and len(seen) == 30 and torch.isfinite(m2.w).all()


def test_a_step_that_says_diverged_rolls_back_like_a_nan(tmp_path, capsys):
    """Values can stay finite while a run explodes; a step raising Diverged gets the same rollback."""
    from gancompress.distill.loop import Diverged, run_loop

    m, opt, sched = _loop_objects()
    seen, hits = [], []
    train = _trainer(m, opt, sched, lambda i: False, seen)

    def step(i):
        logs = train(i)
        if i == 17 and not hits:
            hits.append(i)
            raise Diverged("held-out PSNR fell to 3.0 dB from 30.0")
        return logs
    run_loop("t", 40, step, {"m": m, "opt": opt, "sched": sched}, tmp_path / "a.ckpt", ckpt_every=5, quiet=True)
    err = capsys.readouterr().err
    assert "held-out PSNR fell" in err and "rolled back to step 15" in err
    assert [i for i, _ in seen] == list(range(18)) + list(range(15, 40))
    assert opt.used[-1] == pytest.approx(0.5 * seen[-1][1])


class _FixedPairs:
    """A sampler of one fixed batch (input, target = input / 2), with the state a checkpoint keeps."""

    def __init__(self, on_draw=None):
        torch.manual_seed(0)
        self.x = torch.rand(2, 3, 16, 16)
        self.n, self.on_draw = 0, on_draw

    def next_batch(self):
        self.n += 1
        if self.on_draw:
            self.on_draw(self.n)
        return self.x, self.x / 2

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, d):
        self.n = d["n"]


def test_an_ofa_fine_tune_that_explodes_rolls_back_instead_of_training_on(tmp_path, capsys):
    """A fine-tune whose held-out PSNR collapses (an SRGAN run fell from 30.4 to 2.9 dB and trained
    4000 more steps from there) rolls back to its last checkpoint at half the learning rate."""
    import torch.nn as nn

    from gancompress.methods.once_for_all import EXPLODED_DB, Objective, OFAConfig, finetune

    torch.manual_seed(0)
    student = nn.Conv2d(3, 3, 3, padding=1)
    done = []

    def sabotage(n):  # once, after the first validation: blow the weights up (finite)
        if n == 60 and not done:
            done.append(n)
            with torch.no_grad():
                student.weight.mul_(50.0)
    sampler = _FixedPairs(sabotage)
    cfg = OFAConfig(lambda_gan=0.0)
    obj = Objective(cfg, nn.functional.l1_loss, None, {}, student, "sr", 1, None, 16, "cpu")
    val = (sampler.x, sampler.x / 2)
    finetune(cfg, student, obj, sampler, False, 150, 2e-3, tmp_path / "ft.ckpt", "cpu", quiet=True,
             val_batch=val, log=lambda m: None)
    err = capsys.readouterr().err
    assert "rolled back to step 50" in err and "held-out PSNR" in err
    psnrs = [p for _, p in student.finetune_val]
    assert [s for s, _ in student.finetune_val] == [50, 100, 150]
    assert min(psnrs) > max(psnrs) - EXPLODED_DB


def test_onnx_export_check_fails_on_nan(tmp_path):
    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.export.student import export_onnx

    torch.manual_seed(0)
    model = build_student(uniform_sr_spec(4, 4, 1, 1))
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(UserError, match="non-finite"):
        export_onnx(model, tmp_path / "s.onnx")
    assert os.listdir(tmp_path) == []  # nothing written, no temporary file


# ---- item 4: one line instead of a traceback --------------------------------------------------
@pytest.mark.parametrize("budget", ["inf", "1e400", "-inf", "nan", "1e400/1", "0", "-5G", "1/0"])
def test_budget_overflow_is_one_line(cli_args, tmp_path, capsys, budget):
    code = main([*cli_args(tmp_path / "b"), f"--budget={budget}"])
    assert_one_line_error(code, capsys.readouterr().err, "budget")
    assert not (tmp_path / "b").exists()


class _Failing:
    """A file whose writes fail with `err` (a full disk, a read-only file system...)."""

    def __init__(self, f, err):
        self.f, self.err = f, err

    def write(self, data):
        raise OSError(self.err, os.strerror(self.err))

    def __getattr__(self, a):
        return getattr(self.f, a)


def fail_writes(monkeypatch, err, match):
    from gancompress import fileio

    real = fileio._open_tmp

    def opener(tmp):
        f = real(tmp)
        return _Failing(f, err) if match in tmp.name else f
    monkeypatch.setattr(fileio, "_open_tmp", opener)


@pytest.mark.parametrize("err,words", [(errno.EROFS, ["read-only", "EROFS"]), (errno.EACCES, ["EACCES", "permission"]),
                                       (errno.ENOSPC, ["ENOSPC", "free some space"])])
def test_os_errors_are_one_line_naming_the_path(cli_args, tmp_path, capsys, monkeypatch, err, words):
    fail_writes(monkeypatch, err, "config.json")
    code = main(cli_args(tmp_path / "r"))
    assert_one_line_error(code, capsys.readouterr().err, str(tmp_path / "r" / "config.json"), *words)
    assert not [p for p in (tmp_path / "r").iterdir() if ".tmp" in p.name]


def test_unrecognised_os_errors_still_raise(monkeypatch, tmp_path):
    """Only the errors a user can fix become one line; a bug keeps its traceback."""
    from gancompress.errors import os_error_message

    assert os_error_message(OSError(errno.EBADF, "Bad file descriptor")) is None
    assert "ENOSPC" in os_error_message(OSError(errno.ENOSPC, "No space left on device", "x"))


def test_torn_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path, capsys):
    """Interrupt fit_pixels after two checkpoints, tear the newest: the resume uses the older one,
    says so, and ends with the same weights as an uninterrupted run."""
    from gancompress.distill.loop import previous_path
    from gancompress.distill.train import fit_pixels

    model_a, fresh, cfg = interrupted_fit(tmp_path, 111)
    ckpt = tmp_path / "b.ckpt"
    assert previous_path(ckpt).is_file()  # steps 50 and 100 were saved
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:len(data) // 2])  # torn
    capsys.readouterr()
    model_c, sampler_c = fresh()
    fit_pixels(model_c, sampler_c, cfg, ckpt, "b", quiet=True)
    err = capsys.readouterr().err
    assert "torn" in err and "previous checkpoint" in err and "step 50" in err
    for (k, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.equal(a, c), k


def test_checkpoint_with_no_good_copy_is_one_clear_error(tmp_path):
    from gancompress.distill.loop import load_resume_checkpoint, previous_path, save_atomic

    p = tmp_path / "x.ckpt"
    save_atomic({"step": 1}, p)
    save_atomic({"step": 2}, p)
    for f in (p, previous_path(p)):
        b = bytearray(f.read_bytes())
        b[-5] ^= 0xFF  # one flipped bit in the payload: the checksum catches it
        f.write_bytes(bytes(b))
    with pytest.raises(UserError, match="delete"):
        load_resume_checkpoint(p)


def test_checkpoints_of_older_versions_still_load(tmp_path):
    from gancompress.distill.loop import load_checkpoint

    torch.save({"step": 3}, tmp_path / "old.ckpt")  # no checksum header
    assert load_checkpoint(tmp_path / "old.ckpt")["step"] == 3


# ---- item 5: half-written files ---------------------------------------------------------------
def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path, monkeypatch):
    from gancompress.fileio import atomic_write_text

    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    fail_writes(monkeypatch, errno.ENOSPC, "a.json")
    with pytest.raises(OSError) as e:
        atomic_write_text(target, "new")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_stale_temporary_files_are_removed_on_resume(tiny_teacher, tiny_data, tmp_path):
    from gancompress.api import compress

    train, evald = tiny_data
    out = tmp_path / "r"
    cfg = tiny_config(tiny_teacher, train, evald, out)
    from gancompress.rundir import RunDir

    RunDir(out, cfg.to_dict()).close()  # a run that was killed early on
    (out / "student").mkdir()
    stale = [out / ".retrain.ckpt.tmp999999", out / "student" / ".student.onnx.tmp999999"]
    for p in stale:
        p.write_bytes(b"half")
    compress(cfg)
    assert not any(p.exists() for p in stale)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


# ---- item 6: bounded memory in upscale/apply --------------------------------------------------
def test_streamed_upscale_equals_the_untiled_result(tmp_path):
    """Tiles (smaller than the image) streamed into the PNG give exactly the whole-image output when
    the overlap covers the network's receptive field; and the same pixels as predict_tiled always."""
    from PIL import Image

    from gancompress.api import upscale
    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.data.images import load_image, to_uint8_tensor
    from gancompress.evaluate import predict_tiled
    from gancompress.export.student import save_student

    torch.manual_seed(0)
    spec = uniform_sr_spec(4, 8, 1, 2)  # 5 convs 3x3: receptive field radius 5
    model = build_student(spec).eval()
    save_student(model, spec, tmp_path / "student")
    g = torch.Generator().manual_seed(0)
    src = tmp_path / "in.png"
    Image.fromarray((torch.rand(37, 45, 3, generator=g) * 255).to(torch.uint8).numpy()).save(src)
    x = load_image(src)
    with torch.no_grad():
        whole = to_uint8_tensor(model(x[None]).clamp(0, 1)[0])
    for tile, overlap in ((16, 6), (24, 8)):
        [out] = upscale(str(tmp_path / "student"), [str(src)], str(tmp_path / f"up{tile}"), quiet=True,
                        tile=tile, overlap=overlap)
        got = torch.from_numpy(np.array(Image.open(out))).permute(2, 0, 1)
        assert got.shape == (3, 148, 180)
        assert torch.equal(got, whole), (tile, (got.int() - whole.int()).abs().max())
    [out] = upscale(str(tmp_path / "student"), [str(src)], str(tmp_path / "up_small_overlap"), quiet=True,
                    tile=16, overlap=2)
    got = torch.from_numpy(np.array(Image.open(out))).permute(2, 0, 1)
    assert torch.equal(got, to_uint8_tensor(predict_tiled(model, x, 4, tile=16, overlap=2)))
    assert not torch.equal(got, whole)  # so the tiles really were smaller than the image


def test_8_bit_reader_matches_load_image(tmp_path):
    """upscale reads images as 8 bits, converted as load_image converts them (EXIF rotation, alpha, grey)."""
    from PIL import Image

    from gancompress.data.images import load_image
    from gancompress.streaming import load_image_u8, to_float

    a = (np.random.default_rng(0).random((20, 30, 4)) * 255).astype(np.uint8)
    rotated = Image.fromarray(a[..., :3])
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    rotated.save(tmp_path / "rot.jpg", exif=exif)
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(a[..., 0], "L").save(tmp_path / "grey.png")
    for name in ("rot.jpg", "alpha.png", "grey.png"):
        x = load_image_u8(tmp_path / name, 1e9)
        assert torch.equal(to_float(x)[0], load_image(tmp_path / name)), name
    assert load_image_u8(tmp_path / "rot.jpg", 1e9).shape == (30, 20, 3)


def test_png_writer_rows_round_trip():
    from PIL import Image

    from gancompress.streaming import PngStreamWriter

    g = torch.Generator().manual_seed(0)
    rows = (torch.rand(23, 19, 3, generator=g) * 255).to(torch.uint8).numpy()
    for level in (1, 6):
        buf = io.BytesIO()
        w = PngStreamWriter(buf, 19, 23, level, chunk=64)  # many IDAT chunks
        for a, b in ((0, 1), (1, 10), (10, 23)):
            w.write_rows(rows[a:b])
        w.close()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), rows)


def test_max_pixels_refuses_big_inputs_in_one_line(tmp_path, capsys):
    from PIL import Image

    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_sr_spec
    from gancompress.export.student import save_student

    spec = uniform_sr_spec(4, 4, 1, 1)
    save_student(build_student(spec), spec, tmp_path / "student")
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    code = main(["upscale", str(tmp_path / "student"), str(tmp_path / "big.png"), "--out", str(tmp_path / "o"),
                 "--max-pixels", "1000", "--quiet"])
    assert_one_line_error(code, capsys.readouterr().err, "big.png", "40x30", "--max-pixels")
    assert not (tmp_path / "o").exists()
    assert main(["upscale", str(tmp_path / "student"), str(tmp_path / "big.png"), "--out", str(tmp_path / "o"),
                 "--max-pixels", "1200", "--quiet"]) == 0


def test_translation_apply_refuses_above_its_limit(tmp_path, capsys):
    from PIL import Image

    from gancompress.arch.build import build_student
    from gancompress.arch.spec import uniform_translate_spec
    from gancompress.export.student import save_student

    spec = uniform_translate_spec(8, 1, 1)
    save_student(build_student(spec), spec, tmp_path / "student")
    Image.new("RGB", (30, 22), (200, 100, 50)).save(tmp_path / "a.png")
    code = main(["apply", str(tmp_path / "student"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--max-pixels", "600", "--quiet"])
    assert_one_line_error(code, capsys.readouterr().err, "a.png", "whole image")
    assert main(["apply", str(tmp_path / "student"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    assert Image.open(tmp_path / "o" / "a_translated.png").size == (30, 22)


def test_damaged_run_tensors_are_recomputed_or_one_clear_error(tiny_teacher, tiny_data, tmp_path):
    """The teacher-target cache is recomputed when damaged; files the run cannot recompute alone
    (search weights) are a UserError naming the file and the fix."""
    from gancompress.data.run_data import teacher_targets, training_images
    from gancompress.teachers.checks import load_task_teacher
    from gancompress.errors import UserError
    from gancompress.fileio import load_run_tensors
    from gancompress.rundir import RunDir

    train, evald = tiny_data
    cfg = tiny_config(tiny_teacher, train, evald, tmp_path / "r")
    run = RunDir(tmp_path / "r", cfg.to_dict())
    try:
        teacher = load_task_teacher(cfg.task, cfg.teacher, scale=cfg.scale)
        images = training_images(cfg)
        names, pairs = teacher_targets(cfg, run, teacher, images)
        path = tmp_path / "r" / "teacher_targets.safetensors"
        path.write_bytes(path.read_bytes()[:100])  # torn
        names2, pairs2 = teacher_targets(cfg, run, teacher, images)
        assert names2 == names and all(torch.equal(a[1], b[1]) for a, b in zip(pairs, pairs2))
        assert load_run_tensors(path).keys()  # rewritten whole
    finally:
        run.close()
    bad = tmp_path / "init.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(UserError, match="init.safetensors is damaged.*--force"):
        load_run_tensors(bad)


def test_a_retraining_loss_that_spikes_rolls_back(tmp_path, capsys):
    """fit_pixels: a batch loss 20x its running mean (an SRGAN 1/40 student's L1 went from 0.012 to
    567 and never recovered) rolls back to the last checkpoint at half the learning rate; a resumed
    run keeps the running mean."""
    import torch.nn as nn

    from gancompress.distill.loop import load_checkpoint
    from gancompress.distill.train import SPIKE_AFTER, TrainConfig, check_spike, fit_pixels

    torch.manual_seed(0)
    student = nn.Conv2d(3, 3, 3, padding=1)
    done = []

    def sabotage(n):  # once, mid-run: blow the weights up (finite), as a bad Adam step does
        if n == SPIKE_AFTER + 30 and not done:
            done.append(n)
            with torch.no_grad():
                student.weight.mul_(1000.0)
    fit_pixels(student, _FixedPairs(sabotage), TrainConfig(steps=SPIKE_AFTER + 100, lr=1e-3), tmp_path / "r.ckpt",
               "retrain", quiet=True)
    err = capsys.readouterr().err
    assert "jumped to" in err and "running mean" in err and "rolled back to step 100" in err
    ck = load_checkpoint(tmp_path / "r.ckpt")
    assert ck["guard"]["lr_scale"] == 0.5 and ck["extra"]["loss"] > 0
    assert student.weight.abs().max() < 100
    trend = {"loss": 1.0}
    check_spike(trend, 19.0, SPIKE_AFTER)  # under the factor: a hard batch, not a divergence
    with pytest.raises(Exception, match="jumped"):
        check_spike(trend, 25.0, SPIKE_AFTER)
    check_spike({"loss": 1.0}, 50.0, SPIKE_AFTER - 1)  # too early to trust the mean
