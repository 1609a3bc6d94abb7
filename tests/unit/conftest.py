import pytest

from sc_unit import Site


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)
