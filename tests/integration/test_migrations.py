"""The migrations create exactly the schema the models describe, and run both ways."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger.db import make_engine
from ledger.migrate import alembic_config, current_revision, head_revision, upgrade
from ledger.models import Base


def test_models_match_the_migrated_schema(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_and_upgrade_again(fresh_database_url):
    engine = make_engine(fresh_database_url)
    try:
        assert current_revision(engine) == head_revision()
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert current_revision(engine) is None
        upgrade(engine)
        upgrade(engine)  # a second release process finds nothing to do
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
