"""examples/flower-secagg is a valid Flower app: its config validates, both components load
(without torch: it is imported inside the functions), and ``flwr build`` bundles it.

Then the README's own commands, taken from its code blocks and run in bash as a new user
would: from the root of a repository whose ``.venv`` is this test's environment, after the
README's set-up lines, in a fresh ``FLWR_HOME``. The only changes: the README's fixed ports
become free ones, and Flower's SuperExec polls for ClientApp tasks every 0.2 s instead of 1 s.
Each run must print three rounds with rising test accuracy ending above 0.7, and the DP run the
epsilon the README states."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from privagg.flower.federation import quiet_environment  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flower-secagg"


def test_example_config_validates_and_components_load(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    code = f"""
import sys, tomli
from flwr.common.config import validate_config
from flwr.supercore.object_ref import load_app
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
config = tomli.loads(open({str(app / "pyproject.toml")!r}).read())
valid, errors, _ = validate_config(config, check_module=True, project_dir={str(app)!r})
assert valid, errors
components = config["tool"]["flwr"]["app"]["components"]
assert isinstance(load_app(components["serverapp"], RuntimeError, {str(app)!r}), ServerApp)
assert isinstance(load_app(components["clientapp"], RuntimeError, {str(app)!r}), ClientApp)
assert "torch" not in sys.modules, "ClientApp processes start per message: keep torch out of module level"
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=quiet_environment(tmp_path / "home"))
    assert out.returncode == 0, out.stderr[-3000:]


def test_flwr_build_bundles_the_example(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    flwr = Path(sys.executable).parent / "flwr"
    out = subprocess.run([str(flwr), "build", "--app", str(app)], capture_output=True, text=True, cwd=tmp_path,
                         env=quiet_environment(tmp_path / "home"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (fab,) = list(tmp_path.glob("*.fab"))
    names = set(zipfile.ZipFile(fab).namelist())
    assert {"pyproject.toml", "flower_secagg/client_app.py", "flower_secagg/server_app.py",
            "flower_secagg/task.py"} <= names


# ------------------------------------------------------------------------------------------
# The README's own commands, run as a new user would (slow: real Flower runs, torch training)
# ------------------------------------------------------------------------------------------

README = EXAMPLE / "README.md"
ROUND_LINE = re.compile(r"^round (\d+): summed (\d+) nodes \(dropped \[[^\]]*\]\), test accuracy ([\d.]+)"
                        r"(?:, epsilon ([\d.]+))?$", re.MULTILINE)
#: The README's fixed ports, and the flag the SuperLink command leaves at its default (8000):
#: the test substitutes free ones, so that it never collides with anything else on the machine.
README_PORTS = ("8000", "9094", "9095", "9096")
LONG_RUNNING = ("flower-superlink", "flower-supernode")


def readme_sections() -> dict[str, list[tuple[str, str]]]:
    """Heading -> the fenced blocks under it, as (language, text)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    heading = ""
    for part in re.split(r"^## ", README.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = part.partition("\n")
        sections[heading.strip()] = re.findall(r"^```(\w+)\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)
    return sections


def commands(section: str, language: str = "bash") -> list[str]:
    lines = [line for lang, text in readme_sections()[section] if lang == language for line in text.splitlines()]
    assert not any(line.rstrip().endswith("\\") for line in lines), "one command per line, please"
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


class UserShell:
    """A new user's terminals: each command runs in bash after the README's set-up lines, from
    the root of a repository whose ``.venv`` is this test's environment (what `make setup` makes)."""

    def __init__(self, tmp: Path) -> None:
        import tempfile

        from privagg.flower.federation import free_port

        self.root = tmp / "repo"
        (self.root / "examples").mkdir(parents=True)
        shutil.copytree(EXAMPLE, self.root / "examples" / "flower-secagg",
                        ignore=shutil.ignore_patterns("__pycache__", "identities"))
        (self.root / ".venv").symlink_to(Path(sys.prefix))  # the venv this test runs in
        self.home = tmp / "flwr-home"
        self.ray = Path(tempfile.mkdtemp(prefix="pagx-", dir="/tmp"))  # Ray's socket paths must stay short
        self.env = quiet_environment(self.home, {
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()), "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
            "RAY_TMPDIR": str(self.ray), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"})
        self.ports = {port: str(free_port()) for port in README_PORTS}
        self.setup = "\n".join(["set -e", *commands("Set up")])
        self.background: list[subprocess.Popen[bytes]] = []
        self.logs = tmp / "logs"
        self.logs.mkdir()

    def localise(self, command: str) -> str:
        for port, free in self.ports.items():
            command = command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}").replace(f"--port {port}",
                                                                                      f"--port {free}")
        if command.startswith("flower-superlink") and "--port" not in command:
            command += f" --port {self.ports['8000']}"
        return command

    def run(self, command: str, timeout: float = 300.0) -> str:
        out = subprocess.run(["bash", "-c", f"{self.setup}\n{self.localise(command)}"], cwd=self.root, env=self.env,
                             capture_output=True, text=True, timeout=timeout, start_new_session=True)
        text = out.stdout + out.stderr
        assert out.returncode == 0, f"{command!r} exited {out.returncode}:\n{text[-4000:]}"
        return text

    def start(self, command: str) -> None:
        log = open(self.logs / f"bg-{len(self.background)}.log", "wb")  # noqa: SIM115 - kept for the process
        self.background.append(subprocess.Popen(["bash", "-c", f"{self.setup}\nexec {self.localise(command)}"],
                                                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True))

    def wait_for(self, pattern: str, count: int, timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(p.read_text(errors="replace") for p in self.logs.glob("bg-*.log"))
            if text.count(pattern) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"{count} x {pattern!r} not seen in the background logs:\n{text[-4000:]}")

    def stop(self, processes: list[subprocess.Popen[bytes]]) -> None:
        import signal

        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def close(self) -> None:
        import signal
        import time

        from privagg.flower.federation import processes_in

        self.stop(self.background)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in processes_in(self.home):  # what Flower detached: SuperExecs, the local SuperLink, Ray
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 8
            while processes_in(self.home) and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.ray, ignore_errors=True)
        assert processes_in(self.home) == [], "a process the README started outlived the test"


def learning(output: str) -> list[tuple[int, int, float, float | None]]:
    """(round, nodes summed, test accuracy, epsilon) for each round the example printed."""
    return [(int(r), int(n), float(a), float(e) if e else None) for r, n, a, e in ROUND_LINE.findall(output)]


def readme_epsilon() -> float:
    """The epsilon the README's sample output states after the last round."""
    (sample,) = [text for lang, text in readme_sections()["Run it in Flower's simulation engine"] if lang == "text"]
    return learning(sample)[-1][3]


def check_learns(output: str, *, dp: bool) -> None:
    rounds = learning(output)
    assert [r for r, *_ in rounds] == [1, 2, 3] and all(n == 3 for _, n, *_ in rounds), output[-4000:]
    accuracy = [a for _, _, a, _ in rounds]
    assert accuracy[-1] > 0.7 and accuracy[-1] > accuracy[0], accuracy  # from 0.13 before training
    if dp:
        assert rounds[-1][3] == pytest.approx(readme_epsilon(), abs=0.05), "the README states another epsilon"
    else:
        assert all(e is None for *_, e in rounds)


@pytest.fixture
def user(tmp_path: Path):
    shell = UserShell(tmp_path)
    try:
        yield shell
    finally:
        shell.close()


@pytest.mark.slow
def test_readme_simulation_commands_run_and_learn(user: UserShell) -> None:
    pytest.importorskip("ray", reason="Flower's simulation engine needs flwr[simulation]")
    default, ckks = commands("Run it in Flower's simulation engine")
    check_learns(user.run(default), dp=True)
    check_learns(user.run(ckks), dp=False)


@pytest.mark.slow
def test_readme_superlink_and_active_security_commands_run_and_learn(user: UserShell) -> None:
    section = "Run it on a SuperLink and three SuperNodes"
    link, *nodes = [c for c in commands(section) if c.startswith(LONG_RUNNING)]
    submit, status = [c for c in commands(section) if not c.startswith(LONG_RUNNING)]
    connection = "\n".join(commands(section, "toml"))
    user.home.mkdir(parents=True, exist_ok=True)
    (user.home / "config.toml").write_text(user.localise(connection) + "\n")
    user.start(link)
    user.wait_for("Starting Flower SuperLink", 1)
    for node in nodes:
        user.start(node)
    user.wait_for("SuperNode ID", 3)
    output = user.run(submit)
    check_learns(output, dp=True)
    runs = json.loads(user.run(status))["runs"]
    assert [r["status"] for r in runs] == ["finished:completed"], runs

    # Active security: the same SuperLink, the SuperNodes restarted with provisioned identities.
    make_identities, *active_nodes, active_submit = commands("Active security on provisioned SuperNodes")
    user.stop(user.background[1:])
    user.run(make_identities)
    assert (user.root / "examples" / "flower-secagg" / "identities" / "roster.json").exists()
    for node in active_nodes:
        user.start(node)
    user.wait_for("SuperNode ID", 6)
    output = user.run(active_submit)
    check_learns(output, dp=False)
    assert "secagg+ {'security': 'active'}" in output
