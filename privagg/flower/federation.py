"""A local Flower federation of real processes, for tests, benchmarks and demos.

``LocalFederation`` starts Flower's own ``flower-superlink`` and ``flower-supernode`` processes on
127.0.0.1 (free ports, temporary directories, insecure or TLS) and submits apps with the real
``flwr run``. Nothing of Flower is replaced: what runs here is what runs in a deployment, so a
test that passes here has exercised Flower's polling, its per-message ClientApp processes and
its error replies.

Why the care with processes: a SuperNode starts a SuperExec, which starts one ClientApp process
per message, and those outlive a SuperNode killed with SIGTERM. Every process we start therefore
gets its own process group (``start_new_session``), everything it spawns stays in that group,
and :meth:`LocalFederation.close` ends whole groups, escalating to SIGKILL, and reports any
survivor. Every process gets the same quiet environment (no telemetry, no update check, no Ray
usage stats) and its own ``FLWR_HOME``, so runs never touch the user's Flower configuration,
and, when privagg is imported from a source checkout, that checkout first on ``PYTHONPATH``, so
ClientApps, ServerApps and session hosts run the same privagg as the process that started them.

``client_ids=[...]`` provisions identities (active security): SuperNode ``i`` gets the signing
key of client ``client_ids[i]`` and the roster in its node config (``privagg-signing-key``,
``privagg-roster``, ``privagg-client-id``), written by :meth:`privagg.identity.Identities.save`
under ``root/identities``; :attr:`LocalFederation.roster_path` is what the ServerApp needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privagg.errors import ConfigurationError

__all__ = ["LocalFederation", "TlsFiles", "RunOutcome", "FederationError", "quiet_environment", "free_port"]

#: Set in every process we start: Flower must not phone home from a test or a benchmark.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RUN_ID = re.compile(r"run[ _]id[`\s:]+`?(\d+)", re.IGNORECASE)


class FederationError(RuntimeError):
    """A Flower process did not start, a run could not be submitted, or a process survived."""


def _source_checkout() -> str | None:
    """The repository privagg is imported from, if it is a source checkout (not an installed copy)."""
    import privagg

    root = Path(privagg.__file__).resolve().parent.parent
    return str(root) if (root / "pyproject.toml").is_file() else None


def quiet_environment(flwr_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one Flower process: ours, quiet, with its own ``FLWR_HOME``."""
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    checkout = _source_checkout()
    if checkout is not None:
        # An editable install may point at another checkout than the one imported here (a git
        # worktree, a test run from a copy): Flower's processes must import this one.
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != checkout]
        env["PYTHONPATH"] = os.pathsep.join([checkout, *paths])
    # Flower starts its helpers (flower-superexec, flwr-clientapp, ...) by name, from PATH.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if extra:
        env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS federation: the CA the nodes trust and the SuperLink's key pair.

    The server certificate must name IP 127.0.0.1 (a SAN), or the nodes refuse it.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class RunOutcome:
    """What ``flwr run`` reported: the run id, its final status and the streamed logs."""

    run_id: int
    status: str
    logs: str
    seconds: float

    @property
    def succeeded(self) -> bool:
        return self.status.endswith(":completed")


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    home: Path

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the leader's pid is the group id

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _bin(name: str) -> str:
    """A Flower console script next to this interpreter (the same venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return name


def processes_in(root: Path) -> list[int]:
    """Pids of live processes whose ``FLWR_HOME`` lies under ``root``: everything a federation
    started, however detached (Flower starts its SuperExec in a new session) or orphaned."""
    marker = b"FLWR_HOME=" + str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(v.startswith(marker) for v in environ.split(b"\0")):
            found.append(int(entry.name))
    return sorted(found)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class LocalFederation:
    """A SuperLink and ``nodes`` SuperNodes on 127.0.0.1, all in ``root``.

    ``node_config(i)`` gives SuperNode ``i``'s ``--node-config`` (default: ``partition-id`` and
    ``num-partitions``). ``simulation=True`` starts the SuperLink with ``--simulation`` and no
    SuperNodes: runs then use Flower's simulation engine (Ray) with ``nodes`` virtual nodes.
    ``env`` adds variables to every process (e.g. ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``).
    ``launcher`` prefixes the SuperLink's and SuperNodes' commands (a CPU-accounting wrapper,
    say). ``client_ids`` provisions SuperNode ``i`` as client ``client_ids[i]`` (see the module
    docstring). Use as a context manager; :meth:`close` ends every process group it started.
    """

    root: Path
    nodes: int = 3
    tls: TlsFiles | None = None
    simulation: bool = False
    node_config: Callable[[int], Mapping[str, Any]] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    launcher: tuple[str, ...] = ()
    port: int = 0
    client_ids: Sequence[int] = ()
    node_ids: dict[int, int] = field(default_factory=dict, init=False)
    _link: _Proc | None = field(default=None, init=False)
    _nodes: dict[int, _Proc] = field(default_factory=dict, init=False)
    _others: list[_Proc] = field(default_factory=list, init=False)
    _started: list[_Proc] = field(default_factory=list, init=False)
    _scratch: list[Path] = field(default_factory=list, init=False)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    @property
    def roster_path(self) -> Path | None:
        """The roster file of the provisioned identities (``None`` without ``client_ids``)."""
        return self.identities_dir / "roster.json" if self.client_ids else None

    def _provision(self) -> None:
        from privagg.identity import Identities

        if len(set(self.client_ids)) != len(self.client_ids) or len(self.client_ids) < self.nodes:
            raise ConfigurationError(f"client_ids must give each of the {self.nodes} nodes its own id")
        Identities(self.client_ids).save(self.identities_dir)

    def identity_config(self, index: int) -> dict[str, Any]:
        """The node-config entries provisioning SuperNode ``index`` (empty without ``client_ids``)."""
        if not self.client_ids:
            return {}
        cid = int(self.client_ids[index])
        return {"privagg-signing-key": str(self.identities_dir / f"client-{cid}.key"),
                "privagg-roster": str(self.roster_path), "privagg-client-id": cid}

    def start(self) -> None:
        """Start the SuperLink, wait for ``/health``, then the SuperNodes until each registered."""
        if self.nodes < 1:
            raise ConfigurationError("a federation needs at least one node")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.client_ids:
            self._provision()
        self.port = self.port or free_port()
        if self.simulation and "RAY_TMPDIR" not in self.env:
            # Ray keeps its sessions in $RAY_TMPDIR/ray (else /tmp/ray, forever); its socket
            # paths must stay short, hence a short directory of our own, removed by close().
            scratch = Path(tempfile.mkdtemp(prefix="pagr-", dir="/tmp"))
            self._scratch.append(scratch)
            self.env = {**self.env, "RAY_TMPDIR": str(scratch)}
        args = [_bin("flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
                "--disable-runtime-dependency-installation"]
        args += self._tls_server_args()
        if self.simulation:
            args.append("--simulation")
        self._link = self._spawn("superlink", [*self.launcher, *args])
        self._wait_healthy()
        if not self.simulation:
            for index in range(self.nodes):
                self.start_node(index)
            for index in range(self.nodes):
                self._wait_registered(index)

    def start_node(self, index: int) -> None:
        """Start SuperNode ``index`` (it registers asynchronously; see :meth:`wait_registered`)."""
        config = dict(self.node_config(index) if self.node_config else
                      {"partition-id": index, "num-partitions": self.nodes})
        config.update(self.identity_config(index))
        args = [_bin("flower-supernode"), "--superlink", self.address, "--port", str(free_port()),
                "--node-config", " ".join(f"{k}={_toml(v)}" for k, v in config.items())]
        args += ["--root-certificates", str(self.tls.ca_cert)] if self.tls else ["--insecure"]
        self._nodes[index] = self._spawn(f"node{index}", [*self.launcher, *args])

    def wait_registered(self, index: int) -> int:
        return self._wait_registered(index)

    def stop_node(self, index: int, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to SuperNode ``index`` alone (its ClientApp processes are not told)."""
        proc = self._nodes[index]
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)

    def node_alive(self, index: int) -> bool:
        return self._nodes[index].popen.poll() is None

    def close(self) -> None:
        """End everything this federation started; raise :class:`FederationError` if a process survives.

        SIGTERM to every process group we created and to every process carrying our
        ``FLWR_HOME`` (Flower detaches its SuperExec into a new session), then SIGKILL after a
        grace period, then a last scan.
        """
        procs = list(reversed(self._started))
        if self.root.exists():
            for proc in procs:
                _signal_group(proc.pgid, signal.SIGTERM)
            for pid in processes_in(self.root):
                _signal_pid(pid, signal.SIGTERM)
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline and (
                    any(_group_alive(p.pgid) for p in procs) or processes_in(self.root)):
                for proc in procs:
                    proc.popen.poll()
                time.sleep(0.1)
            for proc in procs:
                _signal_group(proc.pgid, signal.SIGKILL)
            for pid in processes_in(self.root):
                _signal_pid(pid, signal.SIGKILL)
        for proc in procs:
            try:
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._started.clear()
        for scratch in self._scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        self._scratch.clear()
        survivors = self.leftover_processes()
        if survivors:
            raise FederationError(f"processes still alive after SIGKILL: {survivors}")

    def leftover_processes(self) -> list[int]:
        """Pids still alive that this federation started (directly or not)."""
        deadline = time.monotonic() + 3.0
        while True:
            pids = processes_in(self.root) if self.root.exists() else []
            pids += [p.popen.pid for p in self._started if p.popen.poll() is None]
            if not pids or time.monotonic() > deadline:
                return sorted(set(pids))
            time.sleep(0.1)

    def process_groups(self) -> dict[str, int]:
        return {p.name: p.pgid for p in self._started}

    def cpu_seconds(self, name: str) -> float:
        """CPU time (user + system) so far of the process group started as ``name``: every live
        member plus the children each has reaped. Exact for a whole tree only when the group
        leader adopts orphans (a subreaper ``launcher``): ClientApps exit before what they start."""
        pgid = self.process_groups()[name]
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        return total / os.sysconf("SC_CLK_TCK")

    def pid(self, name: str) -> int:
        return next(p.popen.pid for p in self._started if p.name == name)

    def logs(self, name: str) -> str:
        """The output of the process named ``superlink``, ``node<i>`` or ``flwr-run-<n>``."""
        for proc in self._started + self._others:
            if proc.name == name:
                return proc.text()
        raise KeyError(name)

    # -- runs --------------------------------------------------------------------------------
    def run(self, app_dir: Path, run_config: Mapping[str, Any] | None = None, *, timeout: float = 300.0,
            federation_options: Mapping[str, Any] | None = None) -> RunOutcome:
        """``flwr run APP CONNECTION --stream``, then the run's final status from ``flwr ls``.

        ``flwr run`` exits 0 even when the ServerApp raised, so success is read from the status.
        """
        cli_home = self.root / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(self._cli_config(federation_options))
        args = [_bin("flwr"), "run", str(app_dir), "federation", "--stream"]
        if run_config:
            overrides = self.root / f"run-config-{len(self._others)}.toml"
            overrides.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in run_config.items()))
            args += ["--run-config", str(overrides)]
        started = time.monotonic()
        name = f"flwr-run-{len(self._others)}"
        proc = self._spawn(name, args, home=cli_home, keep=False)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pgid, signal.SIGTERM)
            proc.popen.wait(timeout=10)
            raise FederationError(f"flwr run did not finish within {timeout:.0f} s:\n{proc.text()[-4000:]}") from None
        finally:
            _signal_group(proc.pgid, signal.SIGKILL)  # the CLI leaves nothing behind either
        seconds = time.monotonic() - started
        logs = proc.text()
        match = _RUN_ID.search(logs)
        if match is None:
            raise FederationError(f"flwr run printed no run id:\n{logs[-4000:]}")
        run_id = int(match.group(1))
        return RunOutcome(run_id, self.run_status(run_id), logs, seconds)

    def run_status(self, run_id: int) -> str:
        """The run's ``status`` as ``flwr ls --format json`` reports it (e.g. ``finished:completed``)."""
        cli_home = self.root / "cli"
        out = subprocess.run([_bin("flwr"), "ls", "federation", "--run-id", str(run_id), "--format", "json"],
                             env=quiet_environment(cli_home, self.env), capture_output=True, timeout=120,
                             start_new_session=True, check=False)
        try:
            data = json.loads(out.stdout.decode())
            return str(data["runs"][0]["status"])
        except (ValueError, KeyError, IndexError) as exc:
            raise FederationError(f"flwr ls gave no status ({exc}): {out.stdout[-2000:]!r} "
                                  f"{out.stderr[-2000:]!r}") from None

    # -- internals ---------------------------------------------------------------------------
    def _tls_server_args(self) -> list[str]:
        if self.tls is None:
            return ["--insecure"]
        return ["--ssl-certfile", str(self.tls.server_cert), "--ssl-keyfile", str(self.tls.server_key),
                "--ssl-ca-certfile", str(self.tls.ca_cert)]

    def _cli_config(self, options: Mapping[str, Any] | None) -> str:
        lines = ["[superlink]", 'default = "federation"', "", "[superlink.federation]",
                 f'address = "{self.address}"']
        lines.append(f'root-certificates = "{self.tls.ca_cert}"' if self.tls else "insecure = true")
        opts = dict(options or {})
        if self.simulation:
            opts.setdefault("num-supernodes", self.nodes)
        for key, value in opts.items():
            lines.append(f"options.{key} = {_toml(value)}")
        return "\n".join(lines) + "\n"

    def _spawn(self, name: str, args: list[str], *, home: Path | None = None, keep: bool = True) -> _Proc:
        home = home or self.root / name
        home.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=quiet_environment(home, self.env), cwd=str(home),
                                     start_new_session=True)
        proc = _Proc(name, popen, log, home)
        self._started.append(proc)
        if not keep:
            self._others.append(proc)
        return proc

    def _wait_healthy(self) -> None:
        assert self._link is not None
        scheme = "https" if self.tls else "http"
        context = None
        if self.tls:
            import ssl

            context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._link.popen.poll() is not None:
                raise FederationError(f"flower-superlink exited ({self._link.popen.returncode}):\n"
                                      f"{self._link.text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{scheme}://{self.address}/health", timeout=2,
                                            context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise FederationError(f"SuperLink not healthy within {self.startup_timeout:.0f} s:\n"
                              f"{self._link.text()[-4000:]}")

    def _wait_registered(self, index: int) -> int:
        proc = self._nodes[index]
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            match = _NODE_ID.search(proc.text())
            if match:
                self.node_ids[index] = int(match.group(1))
                return self.node_ids[index]
            if proc.popen.poll() is not None:
                raise FederationError(f"SuperNode {index} exited ({proc.popen.returncode}):\n{proc.text()[-4000:]}")
            time.sleep(0.2)
        raise FederationError(f"SuperNode {index} did not register within {self.startup_timeout:.0f} s:\n"
                              f"{proc.text()[-4000:]}")


def _toml(value: Any) -> str:
    """One TOML value, for ``--node-config`` / ``--run-config`` / the connection file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # Flower's key=value parser takes "..." or '...' without escapes; pick the one that fits.
        if '"' not in value and "\\" not in value:
            return f'"{value}"'
        if "'" not in value:
            return f"'{value}'"
    raise ConfigurationError(f"cannot write {type(value).__name__} as a TOML value")
