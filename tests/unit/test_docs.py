"""The documentation in docs/ stays current with the code: every walletctl command and option,
HTTP route, setting, event type and gateway the code has is named where a reader looks for it,
and nothing in the repository points to a file outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest

from walletctl.cli import cli
from webhook_receiver import create_app
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings
from workers.settings import WHATSAPP_TEMPLATES_DEFAULT

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Where the code reads its environment: the product's packages, the Procfile, the test
# fixtures and the benchmarks.
SOURCES = [
    *(ROOT / "ledger").rglob("*.py"),
    *(ROOT / "workers").rglob("*.py"),
    *(ROOT / "webhook_receiver").rglob("*.py"),
    *(ROOT / "walletctl").rglob("*.py"),
    *(ROOT / "bench").glob("*.py"),
    ROOT / "tests" / "conftest.py",
    ROOT / "Procfile",
]
ENVIRONMENT_READS = [
    re.compile(r"""environ\.get\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""),
    re.compile(r"""environ\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]"""),
    re.compile(r"""\b(?:text|parsed)\(\s*"([A-Z][A-Z0-9_]+)\""""),
    re.compile(r"""_int\(\s*environ,\s*"([A-Z][A-Z0-9_]+)\""""),
    re.compile(r"""_VARIABLE = "([A-Z][A-Z0-9_]+)\""""),
    re.compile(r"""\$\{([A-Z][A-Z0-9_]+)"""),
]
EVENT_TYPE = re.compile(r'"((?:wallet|topup|order|provisioning|resource)\.[a-z_]+)"')


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def commands(command: click.Command, path: tuple[str, ...] = ()):
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path, command
    for name, sub in (subcommands or {}).items():
        yield from commands(sub, (*path, name))


def settings_read() -> set[str]:
    names = {f"WHATSAPP_TEMPLATE_{purpose.upper()}" for purpose in WHATSAPP_TEMPLATES_DEFAULT}
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for pattern in ENVIRONMENT_READS:
            names.update(pattern.findall(text))
    return names


def test_every_walletctl_command_and_option_is_in_the_cli_doc():
    written = doc("cli.md")
    found = list(commands(cli))
    assert len(found) == 26
    for path, command in found:
        assert f"`{' '.join(path)}" in written, f"walletctl {' '.join(path)} is not in docs/cli.md"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for option in param.opts:
                    if option not in ("--json",):
                        assert option in written, f"{' '.join(path)} {option} is not documented"


def test_every_route_the_app_serves_is_in_the_api_doc():
    written = doc("api.md")
    app = create_app(ReceiverSettings(database_url="postgresql://127.0.0.1:1/unused"))
    rules = list(app.url_map.iter_rules())
    assert len(rules) == 25
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            assert f"`{method} {path}" in written, f"{method} {path} is not in docs/api.md"


def test_every_setting_the_code_reads_is_in_the_configuration_doc():
    written = doc("configuration.md")
    names = settings_read()
    assert {"DATABASE_URL", "BROKER_URL", "STRIPE_WEBHOOK_SECRET", "WORKER_THREADS"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in written)
    assert not missing, f"not in docs/configuration.md: {missing}"


def test_every_event_type_is_in_the_events_doc():
    written = doc("events.md")
    types = {
        found
        for source in (ROOT / "ledger").glob("*.py")
        for found in EVENT_TYPE.findall(source.read_text(encoding="utf-8"))
    }
    assert len(types) == 10
    missing = sorted(t for t in types if f"| `{t}` |" not in written)
    assert not missing, f"not in docs/events.md: {missing}"


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_gateway_is_in_the_gateway_table_with_its_secret(name):
    row = next(
        (line for line in doc("gateways.md").splitlines() if line.startswith(f"| `{name}` |")),
        None,
    )
    assert row is not None, f"{name} has no row in docs/gateways.md"
    assert f"`{ADAPTERS[name].env_var}`" in row


def test_the_vectors_readme_says_where_each_vector_came_from():
    folder = ROOT / "tests" / "data" / "vectors"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in folder.iterdir() if p.name != "README.md")
    assert len(files) == 8
    for name in files:
        assert f"`{name}`" in readme, f"{name} is not described in tests/data/vectors/README.md"


def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    # Spelled in pieces, so that this file does not find itself.
    outside = [".." + "/shared", "DESIGN" + ".md", "/" + "work/"]
    offenders = [
        f"{name}: {needle}"
        for name in tracked
        if name and (ROOT / name).is_file() and not name.startswith("tests/data/")
        for needle in outside
        if needle in (ROOT / name).read_text(encoding="utf-8", errors="replace")
    ]
    assert not offenders
