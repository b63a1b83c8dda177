"""A Spark standalone cluster on this machine, from the installed pyspark's `bin/spark-class`.

For trying scale-out (and for the cluster test): a master and N workers on loopback. The jobs do not change:
set SPARK_MASTER=spark://127.0.0.1:<port> and they run their executors on the workers (client mode: the
driver stays in the job's process). On a real cluster only SPARK_MASTER (and SPARK_EXECUTOR_MEMORY /
SPARK_CORES_MAX) change; see the README's "Scale-out" section.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tootlake.pipelines.ops.processes import wait_until

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterError(RuntimeError):
    """The cluster did not come up; the message names the log to read."""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalCluster:
    """Master on `master_port` (web UI `ui_port`), workers on master_port+1.. (UIs ui_port+1..)."""

    work_dir: Path
    master_port: int = 27077
    ui_port: int = 28080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def _env(self) -> dict[str, str]:
        home = spark_home()
        return {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.work_dir / "logs"), "SPARK_NO_DAEMONIZE": "1"}

    def _spawn(self, name: str, args: list[str]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(spark_home() / "bin" / "spark-class"), *args]
        with open(self.work_dir / f"{name}.log", "ab") as out:
            self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, env=self._env(),
                                               start_new_session=True))

    def state(self) -> dict:
        """The master's JSON view (workers, running and completed applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return json.loads(response.read())

    def worker_state(self, n: int) -> dict:
        """Worker n's JSON view (1-based): its running and finished executors with their app ids."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port + n}/json/", timeout=5) as response:
            return json.loads(response.read())

    def kill_worker(self, n: int) -> None:
        """SIGKILL worker n (1-based) with its executors (they share its process group): a machine lost."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[n].pid, signal.SIGKILL)  # procs[0] is the master
        self.procs[n].wait()

    def executor_pids(self, n: int) -> list[int]:
        """The executor JVMs worker n runs now (processes of its group running the executor backend)."""
        group = self.procs[n].pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == group and \
                        b"CoarseGrainedExecutorBackend" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
        return pids

    def start(self, timeout: float = 120.0) -> LocalCluster:
        for port in [self.master_port, self.ui_port, *range(self.master_port + 1, self.master_port + 1 +
                                                            self.workers)]:
            if _port_open(port):
                raise ClusterError(f"port {port} on 127.0.0.1 is in use: pick other cluster ports")
        self._spawn("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.master_port),
                               "--webui-port", str(self.ui_port)])
        for n in range(1, self.workers + 1):
            self._spawn(f"worker{n}", [
                WORKER_CLASS, self.url, "--host", "127.0.0.1", "--port", str(self.master_port + n),
                "--webui-port", str(self.ui_port + n), "--cores", str(self.worker_cores),
                "--memory", self.worker_memory, "--work-dir", str(self.work_dir / f"worker{n}")])
        def up() -> str | None:
            if any(p.poll() is not None for p in self.procs):
                return "exited"
            with contextlib.suppress(OSError, ValueError):
                alive = [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) == self.workers:
                    return "up"
            return None

        if wait_until(up, timeout, every=1.0) == "up":
            return self
        self.stop()
        raise ClusterError(f"the standalone cluster did not come up within {timeout:.0f} s; "
                           f"see the logs in {self.work_dir}")

    def stop(self, timeout: float = 30.0) -> None:
        for proc in reversed(self.procs):  # workers first, then the master
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def remove(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


@contextlib.contextmanager
def local_cluster(work_dir: Path, **kwargs) -> Iterator[LocalCluster]:
    cluster = LocalCluster(work_dir, **kwargs).start()
    try:
        yield cluster
    finally:
        cluster.stop()
