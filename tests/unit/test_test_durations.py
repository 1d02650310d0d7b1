"""tests.durations: the seconds per file that order `make test`'s files."""

from __future__ import annotations

from tests.durations import per_file

LOG = """\
============================= slowest durations ==============================
60.50s call     tests/integration/test_b.py::test_one[tansu]
3.00s setup    tests/integration/test_b.py::test_one[tansu]
40.00s call     tests/integration/test_a.py::test_two
2.40s call     tests/unit/test_c.py::test_three
2.70s call     tests/unit/test_c.py::test_four
0.01s teardown tests/unit/test_d.py::test_five
"""


def test_seconds_add_up_per_file_longest_first_and_short_files_are_left_out() -> None:
    found = per_file(LOG)
    assert found == {
        "tests/integration/test_b.py": 64,
        "tests/integration/test_a.py": 40,
        "tests/unit/test_c.py": 5,
    }
    assert list(found) == [
        "tests/integration/test_b.py",
        "tests/integration/test_a.py",
        "tests/unit/test_c.py",
    ]


def test_a_log_without_durations_gives_nothing() -> None:
    assert per_file("== 3 passed in 1.0s ==") == {}
