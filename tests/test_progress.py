"""sharpness.core.progress: TQDM_DISABLE switches bars off even where the caller passes disable=False."""

import pytest

from sharpness.core.progress import switched_off, tqdm


@pytest.mark.parametrize("value, off", [("", False), ("0", False), ("false", False), ("1", True), ("True", True)])
def test_tqdm_disable_is_honoured_over_an_explicit_disable_false(monkeypatch, value, off):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert switched_off() is off
    with tqdm(range(3), disable=False) as bar:
        assert bar.disable is off
        assert list(bar) == [0, 1, 2]  # iterating works either way
