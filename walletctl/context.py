"""What every walletctl command shares: settings, a lazily created engine, and output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from ledger.db import make_engine, make_session_factory
from ledger.errors import LedgerError
from ledger.settings import LedgerSettings

# PostgreSQL's refusal of a connection to a database it does not have (SQLSTATE 3D000, which
# libpq reports only in the message at connection time).
_MISSING_DATABASE = re.compile(r'database "[^"]*" does not exist')


class CommandFailed(click.ClickException):
    """A command that cannot do what was asked; the message says what to do instead."""

    exit_code = 1


@dataclass
class Context:
    as_json: bool
    settings: LedgerSettings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(
                self.settings.database_url, pool_size=2, timeouts=self.settings.timeouts
            )
        return self._engine

    @property
    def database(self) -> str:
        return make_url(self.settings.database_url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction; database and ledger errors become messages that say what to do."""
        try:
            with make_session_factory(self.engine).begin() as session:
                yield session
        except LedgerError as exc:
            raise CommandFailed(str(exc)) from exc
        except OperationalError as exc:
            raise self.unavailable(exc, then="run `walletctl db upgrade`") from exc
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) == "42P01":
                raise CommandFailed(
                    f"the database at {self.database} has no ledger tables yet: "
                    "run `walletctl db upgrade` first."
                ) from exc
            raise

    def unavailable(self, error: OperationalError, *, then: str) -> CommandFailed:
        """What to do when the database cannot be used: create it if it is missing, `then`
        what; otherwise start PostgreSQL or point DATABASE_URL at one."""
        url = make_url(self.settings.database_url)
        if _MISSING_DATABASE.search(str(error.orig)):
            where = " ".join(
                f"-{flag} {value}"
                for flag, value in (("h", url.host), ("p", url.port), ("U", url.username))
                if value
            )
            return CommandFailed(
                f"the database {url.database} does not exist at {self.database}: create it "
                f"(`createdb {where + ' ' if where else ''}{url.database}`), then {then}."
            )
        return CommandFailed(
            f"cannot reach the database at {self.database}: start PostgreSQL "
            "(`make services`) or point DATABASE_URL at a running one."
        )

    def emit(self, data: dict[str, Any], text: str) -> None:
        """Print `data` as JSON with --json, otherwise the human `text`."""
        click.echo(json.dumps(data, default=str, sort_keys=True) if self.as_json else text)


pass_context = click.make_pass_decorator(Context)
