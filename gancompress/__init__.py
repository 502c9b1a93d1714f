"""gancompress: turn a big image generator (the teacher) into a small, fast student.

    from gancompress import compress
    result = compress(teacher="srgan:srgan_x4.pth", budget="1/10", out="runs/x")
    result.student, result.spec, result["psnr_to_teacher"], result.run_dir

    result = compress(teacher=my_module, train_data=list_of_images, task="translate",
                      teacher_range=(-1, 1), budget="1/5", out="runs/t")
"""

__version__ = "0.1.0"

_EXPORTS = {
    "compress": "api", "CompressResult": "api", "CompressConfig": "config", "task_config": "config",
    "SpaceConfig": "methods.space", "TrainConfig": "distill.train", "METHODS": "methods.registry",
    "ArchSpec": "arch.spec", "build_student": "arch.build", "spec_macs": "arch.cost",
    "measure_macs": "arch.cost",
    "load_teacher": "teachers", "load_student": "export.student", "save_student": "export.student",
    "export_onnx": "export.student",
    "profile": "api", "evaluate_run": "api", "evaluate_student": "api", "report": "api", "export_run": "api", "upscale": "api", "apply_student": "api",
    "train_sr_teacher": "teachers.train", "train_translate_teacher": "teachers.train_translate",
    "fid_kid": "metrics.fid", "inception_features": "metrics.fid", "UserError": "errors",
}


def __getattr__(name):
    """Import lazily so `import gancompress` stays fast and the CLI starts quickly."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gancompress' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
