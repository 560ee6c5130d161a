"""examples/flower-secagg is a valid Flower app: its config validates, both components load
(without torch: it is imported inside the functions), and ``flwr build`` bundles it. Running it
takes minutes (torch training per round); test_flower_federation.py runs the integration."""

from __future__ import annotations

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
