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
    D, K = space.shape
    assert (D, K) == (len(space.decisions), max(len(d.choices) for d in space.decisions))
    assert space.mask.shape == (D, K) and space.mask.sum() == sum(space.num_choices)
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = space.sample(rng)
        oh = space.one_hot(g)
        assert oh.shape == (D, K) and oh.sum() == D
        assert not oh[~space.mask].any()  # a masked choice is never encoded
        assert space.decode(oh) == g
        assert space.decode(torch.from_numpy(oh)) == g
        assert space.from_string(space.to_string(g)) == space.canonical(g)
        assert space.from_index(space.index(g)) == g


@pytest.mark.parametrize("name", SPACES)
def test_samples_cover_every_valid_choice_and_no_masked_one(name):
    space = get_search_space(name)
    rng = np.random.default_rng(3)
    seen = np.zeros(space.shape, dtype=bool)
    for _ in range(400):
        seen |= space.one_hot(space.sample(rng)).astype(bool)
    np.testing.assert_array_equal(seen, space.mask)


@pytest.mark.parametrize("name", SPACES)
def test_decode_never_picks_a_masked_choice(name):
    space = get_search_space(name)
    w = np.where(space.mask, 0.0, 100.0)  # masked entries would win an unmasked argmax
    w[np.arange(space.num_decisions), 0] = 1.0
    assert space.decode(w) == (0,) * space.num_decisions


@pytest.mark.parametrize("name", SPACES)
def test_mixed_radix_index_enumerates_the_space(name):
    space = get_search_space(name)
    assert space.num_architectures == int(np.prod(np.asarray(space.num_choices, dtype=object)))
    if space.num_architectures <= 20_000:
        idx = space.index_batch(np.asarray(list(space.all_genotypes())))
        np.testing.assert_array_equal(idx, np.arange(space.num_architectures))
    rng = np.random.default_rng(4)
    gs = np.asarray([space.sample(rng) for _ in range(20)])
    assert space.index_batch(gs).tolist() == [space.index(g) for g in gs]
    with pytest.raises(ValueError, match="out of range"):
        space.index_batch(np.asarray([space.num_choices]))


@pytest.mark.parametrize("name", SPACES)
def test_canonical_is_idempotent_and_strings_identify_architectures(name):
    space = get_search_space(name)
    rng = np.random.default_rng(5)
    for _ in range(100):
        g, h = space.sample(rng), space.sample(rng)
        c = space.canonical(g)
        assert space.canonical(c) == c
        assert (space.to_string(g) == space.to_string(h)) == (c == space.canonical(h))


def test_toy_inactive_choices_do_not_distinguish_architectures():
    toy = get_search_space("toy")
    assert toy.shape == (3, 4) and toy.num_choices == (2, 3, 4)
    assert toy.canonical((0, 1, 3)) == (0, 1, 0) and toy.to_string((0, 1, 3)) == toy.to_string((0, 1, 0)) == "d1-k3"
    assert toy.canonical((1, 1, 3)) == (1, 1, 3) and toy.to_string((1, 1, 3)) == "d2-k3-avgpool"
    assert toy.index((1, 2, 3)) == 1 * 12 + 2 * 4 + 3 == toy.num_architectures - 1
    with pytest.raises(ValueError, match="decision 0 \\(depth\\) out of range 0..1"):
        toy.validate((2, 0, 0))


@pytest.mark.parametrize("name", SPACES)
def test_neighbours_differ_in_one_decision(name):
    space = get_search_space(name)
    g = space.sample(np.random.default_rng(2))
    nb = space.neighbours(g)
    assert len(nb) == sum(n - 1 for n in space.num_choices) == len(set(nb))
    assert all(sum(a != b for a, b in zip(g, n, strict=True)) == 1 for n in nb)
    assert all(space.validate(n) == n for n in nb)


@pytest.mark.parametrize("name", SPACES)
def test_anchors_are_valid_distinct_and_canonical(name):
    space = get_search_space(name)
    anchors = space.anchors()
    assert space.num_anchors == len(anchors) >= 2 and len(set(anchors)) == len(anchors)
    for a in anchors:
        assert space.canonical(a) == space.validate(a)
    assert get_search_space("nb201").num_anchors == 10


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


@pytest.mark.parametrize("name", SPACES)
def test_seed_of_fits_torch_and_is_the_plain_sum_for_small_indices(name):
    import torch

    space = get_search_space(name)
    last = tuple(n - 1 for n in space.num_choices)
    seed = space.seed_of(last, 7)
    assert 0 <= seed < 2**63
    torch.manual_seed(seed)  # no overflow, even for OFA's ~7e22 genotypes
    if space.num_architectures < 2**62:
        assert seed == 7 + space.index(last)
