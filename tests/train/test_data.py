"""Validation split by galaxy index, per-epoch shuffles and DDP shards, sanity checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.train.data import (
    check_batch_size,
    epoch_order,
    iter_batches,
    nonfinite_rows,
    split_by_index,
)


def test_validation_split_is_fixed_by_galaxy_index():
    index = np.arange(4000)
    train, val = split_by_index(index, 0.1)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(4000))
    assert 0.08 < len(val) / 4000 < 0.12
    # membership depends on the index alone: not on order or on the size of the store
    shuffled = np.random.default_rng(0).permutation(index)
    _, val_s = split_by_index(shuffled, 0.1)
    assert set(shuffled[val_s]) == set(index[val])
    _, val_small = split_by_index(index[:1000], 0.1)
    assert set(val_small) == {v for v in val if v < 1000}
    # and it is not simply the first or last galaxies
    assert 0 < val.min() and val.max() < 3999 and np.diff(val).max() > 1


def test_split_edge_cases():
    assert len(split_by_index(np.arange(50), 0.0)[1]) == 0
    train, val = split_by_index(np.arange(3), 0.01)  # at least one held out
    assert len(val) == 1 and len(train) == 2


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(100, seed=3, epoch=2)
    assert torch.equal(a, epoch_order(100, seed=3, epoch=2))
    assert sorted(a.tolist()) == list(range(100))
    assert not torch.equal(a, epoch_order(100, seed=3, epoch=3))
    assert not torch.equal(a, epoch_order(100, seed=4, epoch=2))


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_shards_partition_the_epoch_like_one_big_batch(world):
    n, b = 101, 4
    full = epoch_order(n, seed=1, epoch=0)
    shards = [epoch_order(n, seed=1, epoch=0, rank=r, world=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    seen = torch.cat(shards)
    assert len(set(seen.tolist())) == len(seen) == (n // world) * world
    # global step k of `world` ranks of batch b = step k of one process of batch world * b
    per_rank = [list(iter_batches(s, b)) for s in shards]
    single = list(iter_batches(full[: (n // world) * world], world * b))
    assert len(single) - len(per_rank[0]) in (0, 1)  # a last batch of 1 per rank is left out
    for k, batch in enumerate(single[: len(per_rank[0])]):
        together = torch.cat([per_rank[r][k] for r in range(world)])
        assert sorted(together.tolist()) == sorted(batch.tolist())


def test_batches_keep_partial_but_not_single():
    order = torch.arange(10)
    assert [len(b) for b in iter_batches(order, 4)] == [4, 4, 2]
    assert [len(b) for b in iter_batches(torch.arange(9), 4)] == [4, 4]  # 1 left: BatchNorm


def test_batch_larger_than_data_is_refused():
    check_batch_size(50, 100, 2)
    with pytest.raises(CosmobenchError, match=r"batch size 64 is larger than the 50 training "
                                              r"galaxies per process \(2 processes\)"):
        check_batch_size(64, 100, 2)


def test_nonfinite_rows():
    t = torch.zeros(4, 2, 3)
    t[1, 0, 2] = float("nan")
    t[3, 1, 0] = float("-inf")
    assert nonfinite_rows(t).tolist() == [False, True, False, True]


class _Store:
    """The reader attributes the split key reads."""

    def __init__(self, n, config, columns):
        self.n, self.config, self._cols = n, config, columns
        self.columns = tuple(columns)

    def column(self, name):
        return self._cols[name]


def test_split_keeps_ring_pairs_and_shear_test_galaxies_together():
    from cosmobench.train.sources import store_index as _index

    n = 4000
    ring = _Store(n, {"ring": True}, {"index": np.arange(n)})
    train, val = split_by_index(_index(ring), 0.1)
    side = np.zeros(n, bool)
    side[val] = True
    assert side[0::2].tolist() == side[1::2].tolist() and 0.05 < side.mean() < 0.15
    quad = _Store(n, {"shear_test": 0.02}, {"index": np.arange(n), "group": np.arange(n) // 4})
    _, val = split_by_index(_index(quad), 0.1)
    side[:] = False
    side[val] = True
    assert (side.reshape(-1, 4) == side[::4, None]).all()
    plain = _Store(n, {}, {"index": np.arange(n)})
    assert np.array_equal(_index(plain), np.arange(n))
