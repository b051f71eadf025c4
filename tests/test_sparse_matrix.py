"""korqa.retrieval.sparse_matrix does what scipy.sparse does, to the bit, for what the retrievers
use; and the other pieces that replaced scipy and scikit-learn in the base install (TF-IDF
weights, the validation folds, average ranks) match the libraries they replaced."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from scipy.stats import rankdata
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.model_selection import GroupKFold

from korqa.evaluation.open_domain import average_ranks
from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.tfidf import smooth_idf, tfidf_weights
from korqa.splits import balanced_group_folds, group_folds


def random_entries(seed: int, rows: int = 40, columns: int = 30, nnz: int = 300,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO entries with repeats (as repeated terms of a text are)."""
    generator = np.random.default_rng(seed)
    return (generator.integers(1, 4, nnz).astype(np.float32),
            generator.integers(0, rows, nnz), generator.integers(0, columns, nnz))


def pair(seed: int, rows: int = 40, columns: int = 30, nnz: int = 300):
    """The same matrix as scipy's CSR and as korqa's."""
    data, r, c = random_entries(seed, rows, columns, nnz)
    theirs = scipy.sparse.csr_matrix((data, (r, c)), shape=(rows, columns))
    ours = sp.csr_matrix((data, (r, c)), shape=(rows, columns))
    return theirs, ours


def assert_same(ours: sp.CompressedMatrix, theirs) -> None:
    assert ours.format == theirs.format and ours.shape == theirs.shape
    theirs = theirs.copy()
    theirs.sort_indices()
    ours.sort_indices()
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert ours.data.dtype == theirs.data.dtype


def test_building_summing_and_converting_match_scipy():
    theirs, ours = pair(0)
    assert_same(ours, theirs)
    assert_same(ours.tocsc(), theirs.tocsc())
    assert_same(ours.tocsc().tocsr(), theirs)
    assert_same(ours.T.tocsr(), theirs.T.tocsr())
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())
    for axis in (0, 1):
        np.testing.assert_array_equal(np.asarray(ours.sum(axis=axis)).ravel(),
                                      np.asarray(theirs.sum(axis=axis)).ravel())
    # Raw arrays with repeated columns in a row, summed as count matrices are.
    indices = np.array([3, 1, 3, 0, 2, 2, 2], dtype=np.int32)
    indptr = np.array([0, 3, 3, 7], dtype=np.int32)
    data = np.ones(7, dtype=np.float32)
    mine = sp.csr_matrix((data, indices, indptr), shape=(3, 4))
    reference = scipy.sparse.csr_matrix((data, indices, indptr), shape=(3, 4))
    mine.sum_duplicates()
    reference.sum_duplicates()
    assert_same(mine, reference)
    # tocsc leaves each column's rows ascending, which the segments rely on.
    csc = mine.tocsc()
    for column in range(4):
        rows = csc.indices[csc.indptr[column]:csc.indptr[column + 1]]
        assert list(rows) == sorted(rows)


def test_stacking_and_selecting_match_scipy():
    parts = [pair(seed) for seed in (1, 2, 3)]
    for format in ("csr", "csc"):
        assert_same(sp.vstack([o for _, o in parts], format=format),
                    scipy.sparse.vstack([t for t, _ in parts], format=format))
    theirs, ours = pair(4)
    rows = np.array([5, 0, 7, 7, 39])
    assert_same(ours[rows], theirs[rows].tocsr())
    assert_same(ours.tocsc()[rows].tocsc(), theirs.tocsc()[rows].tocsc())
    columns = np.array([2, 9, 29])
    assert_same(ours.tocsc()[:, columns], theirs.tocsc()[:, columns].tocsc())
    assert_same(ours[:, columns].tocsr(), theirs[:, columns].tocsr())
    empty = sp.csr_matrix((3, 5), dtype=np.float32)
    assert empty.shape == (3, 5) and empty.nnz == 0 and empty.tocsc().shape == (3, 5)


def test_sums_and_products_match_scipy_to_the_bit():
    (a_theirs, a_ours), (b_theirs, b_ours) = pair(5), pair(6)
    assert_same(a_ours + b_ours, (a_theirs + b_theirs).tocsr())
    _, c_ours = pair(7, rows=30, columns=50, nnz=600)
    c_theirs = scipy.sparse.csr_matrix(c_ours.toarray())
    product = a_ours @ c_ours
    reference = (a_theirs @ c_theirs).tocsr()
    assert_same(product, reference)
    # Float weights whose sums depend on the order they are added in.
    generator = np.random.default_rng(8)
    a_ours.data = generator.random(a_ours.nnz, dtype=np.float32)
    a_theirs = scipy.sparse.csr_matrix((a_ours.data, a_ours.indices, a_ours.indptr),
                                       shape=a_ours.shape)
    assert_same(a_ours @ c_ours, (a_theirs @ c_theirs).tocsr())
    with pytest.raises(ValueError, match="dimension mismatch"):
        c_ours @ c_ours


def test_npz_files_are_scipys(tmp_path):
    theirs, ours = pair(9)
    scipy.sparse.save_npz(tmp_path / "theirs.npz", theirs.tocsc(), compressed=False)
    assert_same(sp.load_npz(tmp_path / "theirs.npz"), theirs.tocsc())
    sp.save_npz(tmp_path / "ours.npz", ours)
    assert_same(ours, scipy.sparse.load_npz(tmp_path / "ours.npz"))


def test_tfidf_weights_are_scikit_learns():
    _, counts = pair(10)
    for sublinear in (False, True):
        reference = TfidfTransformer(sublinear_tf=sublinear).fit(counts.toarray())
        idf = smooth_idf(counts)
        np.testing.assert_allclose(idf, reference.idf_, rtol=1e-6)
        weights = tfidf_weights(counts.copy(), idf, sublinear)
        np.testing.assert_allclose(weights.toarray(),
                                   reference.transform(counts.toarray()).toarray(),
                                   rtol=1e-5, atol=1e-7)


def test_the_validation_folds_are_scikit_learns_group_k_fold():
    generator = np.random.default_rng(11)
    sizes = generator.integers(1, 60, 112)  # like KorQuAD dev's non-test articles
    for groups in (generator.integers(0, 40, 500), np.repeat(np.arange(20), 5),
                   generator.permutation(np.repeat(np.arange(112), sizes))):
        fold_of = balanced_group_folds(groups, 5)
        for fold, (_, held_out) in enumerate(GroupKFold(n_splits=5).split(groups, groups=groups)):
            np.testing.assert_array_equal(np.flatnonzero(fold_of == fold), held_out)


def test_group_folds_keep_articles_whole():
    class Example:
        def __init__(self, article: int) -> None:
            self.article_index = article

    examples = [Example(a) for a in np.repeat(np.arange(12), 3)]
    seen = []
    for train, validation in group_folds(examples, folds=4):
        assert {e.article_index for e in train}.isdisjoint({e.article_index for e in validation})
        seen.extend(validation)
    assert sorted(map(id, seen)) == sorted(map(id, examples))


def test_average_ranks_are_scipys():
    values = np.random.default_rng(12).integers(0, 10, 200).astype(np.float64)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))
