"""Two source trees on one machine get databases and Redis indexes of their own."""

from pathlib import Path

from ledger import local_names


def test_two_trees_get_different_database_names():
    first = local_names.database_name(Path("/home/ann/walletpipe"))
    second = local_names.database_name(Path("/home/ann/walletpipe-review"))

    assert first != second
    assert first.startswith("walletpipe_")
    assert first == local_names.database_name(Path("/home/ann/walletpipe"))  # stable


def test_redis_pairs_leave_index_zero_and_stay_below_sixteen():
    indexes = {local_names.redis_index(Path(f"/srv/tree-{n}")) for n in range(200)}

    assert indexes == {1, 3, 5, 7, 9, 11, 13}  # the tests take the even one above each


def test_this_trees_test_names_sit_beside_its_run_names():
    assert local_names.default_test_database_url() == local_names.default_database_url() + "_test"
    run_index = int(local_names.default_broker_url().rsplit("/", 1)[1])
    test_index = int(local_names.default_test_broker_url().rsplit("/", 1)[1])
    assert test_index == run_index + 1
    assert local_names.database_name() == local_names.database_name(local_names.source_root())
