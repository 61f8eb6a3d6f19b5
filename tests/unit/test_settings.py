import pytest

from ledger.db import normalise_url
from ledger.local_names import default_database_url
from ledger.settings import LedgerSettings


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost/walletpipe",
        "postgres://localhost/walletpipe",
        "postgresql+psycopg://localhost/walletpipe",
    ],
)
def test_every_postgresql_spelling_uses_psycopg3(url):
    assert normalise_url(url) == "postgresql+psycopg://localhost/walletpipe"


def test_other_databases_are_refused():
    with pytest.raises(ValueError, match="PostgreSQL"):
        normalise_url("mysql://localhost/walletpipe")


def test_settings_default_to_this_trees_local_database():
    assert LedgerSettings.from_env({}).database_url == default_database_url()
    assert LedgerSettings().database_url == default_database_url()


def test_an_explicit_database_url_wins():
    url = "postgresql://db.internal/ledger"
    assert LedgerSettings.from_env({"DATABASE_URL": url}).database_url == url


def test_bad_pool_size_names_the_variable():
    with pytest.raises(ValueError, match="DATABASE_POOL_SIZE"):
        LedgerSettings.from_env({"DATABASE_POOL_SIZE": "many"})
    with pytest.raises(ValueError, match="DATABASE_POOL_SIZE"):
        LedgerSettings.from_env({"DATABASE_POOL_SIZE": "0"})
