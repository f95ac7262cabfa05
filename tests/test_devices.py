import numpy as np
import pytest

from modnas_ops.devices import Device, anchor_embedding


def test_embedding_is_min_max_of_the_anchors():
    lat = [2.0, 4.0, 3.0, 6.0, 10.0, 2.5, 8.0, 4.0, 9.0, 7.0]
    emb = anchor_embedding(lat)
    expected = (np.array(lat) - 2.0) / 8.0
    np.testing.assert_allclose(emb, expected, rtol=1e-6)
    assert emb.dtype == np.float32 and emb.min() == 0 and emb.max() == 1


@pytest.mark.parametrize(
    "lat, message",
    [
        ([1.0] * 9, "expected 10 values"),
        ([1.0] * 9 + [0.0], "must be positive"),
        ([1.0] * 9 + [float("nan")], "finite"),
        ([3.0] * 10, "same latency"),
    ],
)
def test_bad_anchor_latencies(lat, message):
    with pytest.raises(ValueError, match=message):
        anchor_embedding(lat, count=10)


def test_anchor_count_comes_from_the_caller():
    np.testing.assert_allclose(anchor_embedding([2.0, 1.0, 3.0]), [0.5, 0.0, 1.0])  # any space's A anchors
    with pytest.raises(ValueError, match="at least 2 values"):
        anchor_embedding([1.0])


def test_device_roundtrip():
    d = Device("cpu-ort-t1-b1", tuple(float(i + 1) for i in range(10)), "test cpu")
    assert Device.from_dict(d.to_dict()) == d
    assert d.embedding.shape == (10,)
    with pytest.raises(ValueError, match="device 'x'"):
        Device("x", (1.0,) * 10)
