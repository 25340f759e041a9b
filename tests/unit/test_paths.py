"""The build time a dataset report records: reproducible with SOURCE_DATE_EPOCH, else the current time."""

import datetime as dt

import pytest

from lumbar.errors import InputError
from lumbar.paths import build_time


def test_source_date_epoch_fixes_the_build_time():
    assert build_time({"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20+00:00"


def test_without_source_date_epoch_the_build_time_is_now():
    recorded = dt.datetime.fromisoformat(build_time({}))
    assert abs((dt.datetime.now(dt.UTC) - recorded).total_seconds()) < 5


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5"])
def test_a_source_date_epoch_that_is_not_whole_seconds_is_one_sentence(value):
    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH must be a whole number"):
        build_time({"SOURCE_DATE_EPOCH": value})
