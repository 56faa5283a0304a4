"""Browser-tier fixtures: the real app on a free port and one headless Chromium, per test module."""

import pytest

from bench.e2e import browser, running_app


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(outputs=tmp_path_factory.mktemp("outputs")) as (url, sessions):
        yield url, sessions


@pytest.fixture(scope="module")
def chromium():
    with browser() as instance:
        yield instance
