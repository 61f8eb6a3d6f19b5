"""compose.yaml, .env.example and the Dockerfile agree with the Compose schema, with each other
and with the Procfile; the mounted files exist."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SCHEMA = json.loads((ROOT / "deploy" / "schema" / "compose-spec.json").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("migrate", "web", "worker", "scheduler")


def test_compose_yaml_follows_the_compose_specification():
    jsonschema.Draft7Validator(SCHEMA).validate(COMPOSE)


def test_the_schema_refuses_what_compose_refuses():
    broken = {**COMPOSE, "services": {**SERVICES, "web": {**SERVICES["web"], "restart": 3}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_every_dependency_names_a_service():
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_every_mounted_file_is_in_the_repository_and_every_named_volume_is_declared():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_every_required_variable_is_in_env_example():
    text = (ROOT / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required, "compose.yaml requires its secrets"
    assert required <= example


def test_the_app_runs_as_the_procfile_says():
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    for process, service in (("release", "migrate"), ("web", "web"), ("scheduler", "scheduler")):
        assert SERVICES[service]["command"] == shlex.split(procfile[process])
    # The worker's Procfile line sets its pool size in shell; compose sets it in the environment.
    worker = SERVICES["worker"]["command"]
    assert " ".join(worker[:3]) in procfile["worker"]
    assert worker[:3] == ["dramatiq", "workers.actors", "--processes"]


def test_the_image_runs_the_web_by_default_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .+$", dockerfile, flags=re.MULTILINE)
    final = dockerfile.split(stages[-1], 1)[1]
    assert len(stages) >= 2
    assert re.search(r"^USER 10001:10001$", final, flags=re.MULTILINE)
    assert "pip install" not in final
    cmd = re.search(r"^CMD (.+)$", final, flags=re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1)) == SERVICES["web"]["command"]


def test_every_app_service_shares_one_image_and_its_environment():
    images = {SERVICES[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        environment = SERVICES[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://")
        assert "WALLETPIPE_JWT_SECRET" in environment


def build_stage_sources(dockerfile: str) -> list[str]:
    """What the Dockerfile's build stage copies from the build context."""
    build = dockerfile.split(" AS runtime", 1)[0]
    sources = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", build, flags=re.MULTILINE):
        sources.extend(line.split()[:-1])
    return sources


@pytest.mark.slow
def test_the_package_the_image_installs_carries_every_migration(tmp_path):
    # The image builds a wheel from what its build stage copies, in a clean context: do the
    # same, so that nothing left over in the working tree (an egg-info) fills a gap.
    context = tmp_path / "context"
    context.mkdir()
    sources = build_stage_sources((ROOT / "Dockerfile").read_text())
    assert {"setup.cfg", "pyproject.toml", "ledger"} <= set(sources)
    for source in sources:
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / source, context / source)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("walletpipe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "ledger" / "migrations" / "versions").glob("*.py")
    }
    assert revisions
    assert revisions <= names
    assert "ledger/migrations/env.py" in names
