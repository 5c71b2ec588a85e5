"""Bounded, always-cleaned-up subprocesses for the distribute tests.

Not a test module: the test files load it by path (tests/distribute is not
a package). Every process started through `Processes` is killed (SIGKILL)
and reaped when the `with` block ends, whatever happened inside it.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def python_env(**extra):
    """Environment for a child Python: the repository importable, TF quiet."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["KERAS_BACKEND"] = "tensorflow"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held until all are found)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    """TF_CONFIG of worker `index` in a localhost cluster on `ports`."""
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


class Processes:
    """Start Python scripts; on exit kill and reap whatever still runs."""

    def __init__(self, log_dir):
        self.log_dir = pathlib.Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - last resort
                pass
        return False

    def start(self, name, script, args, env):
        log = open(self.log_dir / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(HERE / script), *map(str, args)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
        log.close()
        return self.procs[name]

    def log_tail(self, name, chars=3000):
        path = self.log_dir / f"{name}.log"
        return path.read_text()[-chars:] if path.exists() else ""

    def wait(self, names, timeout):
        """Wait for `names` to exit 0 within `timeout` seconds in total."""
        deadline = time.monotonic() + timeout
        for name in names:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                code = self.procs[name].wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{name} still running after {timeout}s:\n{self.log_tail(name)}"
                ) from None
            if code != 0:
                raise AssertionError(f"{name} exited with {code}:\n{self.log_tail(name)}")

    def wait_until(self, predicate, timeout, watch=()):
        """Poll `predicate()` until true; fail early if a watched process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for name in watch:
                if self.procs[name].poll() is not None:
                    raise AssertionError(
                        f"{name} exited early ({self.procs[name].returncode}):\n"
                        f"{self.log_tail(name)}"
                    )
            time.sleep(0.05)
        raise AssertionError(
            f"condition not met within {timeout}s:\n"
            + "\n".join(self.log_tail(n) for n in watch)
        )

    def sigkill(self, name):
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.returncode


def read_jsonl(path):
    path = pathlib.Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by SIGKILL
            pass
    return records
