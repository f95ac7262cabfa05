import csv
import gzip

import numpy as np
import pytest
import torch

from modnas_ops.spaces import NB201_ANCHOR_INDICES, available_search_spaces, get_search_space

SPACES = available_search_spaces()


@pytest.mark.parametrize("name", SPACES)
def test_shape_sample_one_hot_decode_roundtrip(name):
    space = get_search_space(name)
    E, K = space.shape
    assert (E, K) == (len(space.edges), len(space.ops))
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = space.sample(rng)
        oh = space.one_hot(g)
        assert oh.shape == (E, K) and oh.sum() == E
        assert space.decode(oh) == g
        assert space.decode(torch.from_numpy(oh)) == g
        assert space.from_string(space.to_string(g)) == g
        assert space.from_index(space.index(g)) == g


@pytest.mark.parametrize("name", SPACES)
def test_one_hot_batch_matches_single(name):
    space = get_search_space(name)
    rng = np.random.default_rng(1)
    gs = [space.sample(rng) for _ in range(7)]
    batch = space.one_hot_batch(gs)
    assert batch.shape == (7, *space.shape)
    for b, g in zip(batch, gs, strict=False):
        np.testing.assert_array_equal(b, space.one_hot(g))


@pytest.mark.parametrize("name", SPACES)
def test_neighbours_differ_on_one_edge(name):
    space = get_search_space(name)
    g = space.sample(np.random.default_rng(2))
    nb = space.neighbours(g)
    E, K = space.shape
    assert len(nb) == E * (K - 1) == len(set(nb))
    assert all(sum(a != b for a, b in zip(g, n, strict=False)) == 1 for n in nb)


@pytest.mark.parametrize("name", SPACES)
def test_anchors_are_valid_and_distinct(name):
    space = get_search_space(name)
    anchors = space.anchors()
    assert len(anchors) == 10 and len(set(anchors)) == 10
    for a in anchors:
        space.validate(a)


def test_unknown_space_names_the_choices():
    with pytest.raises(ValueError, match="unknown search space 'nope'.*nb201"):
        get_search_space("nope")


def test_nb201_canonical_string():
    space = get_search_space("nb201")
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    g = space.from_string(s)
    assert g == (3, 3, 4, 1, 3, 1)
    assert space.to_string(g) == s
    assert space.benchmark_index(g) == 1  # row 1 of the published benchmark


@pytest.mark.parametrize(
    "bad, message",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "3 '\\+'-separated nodes"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "should read '<op>~0'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "has 1 inputs, expected 2"),
    ],
)
def test_nb201_bad_strings(bad, message):
    with pytest.raises(ValueError, match=message):
        get_search_space("nb201").from_string(bad)


def test_nb201_validate_rejects_bad_genotypes():
    space = get_search_space("nb201")
    with pytest.raises(ValueError, match="has 2 decisions, expected 6"):
        space.validate((0, 1))
    with pytest.raises(ValueError, match="out of range"):
        space.validate((0, 1, 2, 3, 4, 5))


def test_nb201_index_is_a_permutation():
    space = get_search_space("nb201")
    idx = {space.benchmark_index(g) for g in space.all_genotypes()}
    assert idx == set(range(15625))


def test_nb201_index_agrees_with_every_row_of_the_table(nb201_table_path):
    space = get_search_space("nb201")
    opener = gzip.open if nb201_table_path.suffix == ".gz" else open
    with opener(nb201_table_path, "rt") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    for r in rows:
        g = space.from_string(r["arch"])
        assert space.to_string(g) == r["arch"]
        assert space.benchmark_index(g) == int(r["index"])
        assert space.from_benchmark_index(int(r["index"])) == g


def test_nb201_anchors_are_the_paper_indices():
    space = get_search_space("nb201")
    assert [space.benchmark_index(a) for a in space.anchors()] == list(NB201_ANCHOR_INDICES)


def test_nb201_constant_output_cells():
    space = get_search_space("nb201")
    dead = [g for g in space.all_genotypes() if space.constant_output(g)]
    # no path 0 -> 3 of non-none edges: 3<-0, 3<-1, 3<-2 cut or fed by cut nodes; 341 of 15,625 cells
    assert len(dead) == 341
    assert not any(space.constant_output(g) for g in space.anchors())
    cases = {
        "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|": True,
        "|none~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|": True,  # node 1 is never reached
        "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|": False,
        "|skip_connect~0|+|none~0|none~1|+|none~0|avg_pool_3x3~1|none~2|": False,
    }
    for arch, expected in cases.items():
        assert space.constant_output(space.from_string(arch)) is expected, arch


def test_nb201_constant_output_cells_are_at_chance_in_the_table(nb201_table_path):
    from modnas_ops.benchmarks import load_table

    table = load_table(nb201_table_path)
    space = table.space
    dead = np.array([space.constant_output(tuple(g)) for g in table.genotypes])
    assert dead.sum() == 341
    np.testing.assert_allclose(table.error("cifar10")[dead], 90.0, atol=0.5)  # CIFAR-10 chance: 10 % accuracy
