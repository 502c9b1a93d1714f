"""Run the gancompress CLI in this process with one fault planted, for tests/test_faults.py.

    python tests/fault_harness.py SPEC_JSON ARGS...

SPEC (JSON):
  {"mode": "trace", "log": PATH}          append one line per durable write (its final path) and per
                                          training step ("step NAME I") to PATH, kill nothing
  {"mode": "write", "k": K, "match": S}   SIGKILL this process in the middle of the K-th durable write
                                          whose final path contains S (default: any): half of the bytes
                                          are in the temporary file (a torn write)
  {"mode": "enospc", "k": K, "match": S}  from the K-th such write on, every one fails with ENOSPC
                                          (a full disk), as a real write() would
  {"mode": "step", "loop": NAME, "k": K}  SIGKILL at the start of step K (0-based, counted in this
                                          process) of the training loop called NAME
  {"mode": "call", "target": "MOD:ATTR", "k": K}   SIGKILL at the K-th call of MOD.ATTR

SIGKILL is the real thing: no Python cleanup runs, no lock is released but by the OS.
"""

import errno
import importlib
import json
import os
import signal
import sys


def die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def plant(spec):
    from gancompress import fileio
    from gancompress.distill import loop

    mode = spec["mode"]
    log = open(spec["log"], "a") if mode == "trace" else None
    writes = [0]
    open_tmp = fileio._open_tmp

    def traced_open(tmp):
        f = open_tmp(tmp)
        name = tmp.name.rsplit(".tmp", 1)[0][1:]  # .NAME.tmpPID -> NAME
        final = str(tmp.parent / name)
        if spec.get("match", "") in final:
            writes[0] += 1
        if log:
            log.write(f"write {final}\n")
            log.flush()
        if mode == "enospc" and spec.get("match", "") in final and writes[0] >= spec["k"]:
            class Full:
                def write(self, data):
                    raise OSError(errno.ENOSPC, "No space left on device")

                def __getattr__(self, a):
                    return getattr(f, a)
            return Full()
        if mode == "write" and spec.get("match", "") in final and writes[0] == spec["k"]:
            class Torn:
                def write(self, data):
                    view = memoryview(data).cast("B")
                    f.write(view[:max(1, len(view) // 2)])
                    f.flush()
                    die()

                def __getattr__(self, a):
                    return getattr(f, a)
            return Torn()
        return f

    fileio._open_tmp = traced_open

    real_loop = loop.run_loop

    def run_loop(name, total, step_fn, *a, **kw):
        count = [0]

        def step(i):
            if mode == "step" and name == spec["loop"] and count[0] == spec["k"]:
                die()
            count[0] += 1
            if log:
                log.write(f"step {name} {i}\n")
            return step_fn(i)
        return real_loop(name, total, step, *a, **kw)

    loop.run_loop = run_loop  # bound by the stages when they are imported (after this)

    if mode == "call":
        mod, attr = spec["target"].split(":")
        m = importlib.import_module(mod)
        real, calls = getattr(m, attr), [0]

        def wrapped(*a, **kw):
            calls[0] += 1
            if calls[0] == spec["k"]:
                die()
            return real(*a, **kw)
        setattr(m, attr, wrapped)


if __name__ == "__main__":
    plant(json.loads(sys.argv[1]))
    from gancompress.cli import main

    sys.exit(main(sys.argv[2:]))
