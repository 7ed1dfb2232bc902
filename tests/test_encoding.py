from __future__ import annotations

import numpy as np
import pytest

from mire2e_viz import encoding
from mire2e_viz.errors import InputError, SequenceError


def test_codes_accept_rna_dna_and_soft_masked():
    np.testing.assert_array_equal(encoding.to_codes("ACGUT"), [1, 2, 3, 4, 4])
    np.testing.assert_array_equal(encoding.to_codes("acgut"), [1, 2, 3, 4, 4])


def test_n_and_iupac_are_zero_vectors():
    codes = encoding.to_codes("NRYSWKMBDHVnrykmbdhvsw")
    assert (codes == 0).all()
    assert (encoding.one_hot(codes) == 0).all()


@pytest.mark.parametrize("seq,pos,char", [("ACGX", 4, "X"), ("AC-G", 3, "-"), ("ACGÜ", 4, "Ü"), ("1CG", 1, "1")])
def test_bad_character_names_record_and_position(seq, pos, char):
    with pytest.raises(SequenceError) as err:
        encoding.to_codes(seq, record="chrZ", source="x.fa")
    assert err.value.position == pos and err.value.char == char
    assert "x.fa" in str(err.value) and "'chrZ'" in str(err.value) and f"position {pos}" in str(err.value)


def test_one_hot_order_is_acgu():
    np.testing.assert_array_equal(encoding.one_hot(encoding.to_codes("ACGU")), np.eye(4, dtype=np.float32))


def test_reverse_complement_strings_and_codes_agree():
    seq = "AACGUNGGT"
    rc = encoding.reverse_complement(seq)
    assert rc == "ACCNACGUU"
    np.testing.assert_array_equal(encoding.reverse_complement_codes(encoding.to_codes(seq)), encoding.to_codes(rc))
    batch = np.stack([encoding.to_codes("ACGU"), encoding.to_codes("AAAC")])
    np.testing.assert_array_equal(encoding.reverse_complement_codes(batch)[1], encoding.to_codes("GUUU"))


def test_pad_codes_pads_short_sequences_and_keeps_lengths():
    codes, lengths = encoding.pad_codes(["ACGU", "A" * 100])
    assert codes.shape == (2, 100)
    assert list(lengths) == [4, 100]
    assert (codes[0, 4:] == 0).all()


def test_pad_codes_errors_name_the_record():
    with pytest.raises(SequenceError, match="record 'sequence 2', position 3"):
        encoding.pad_codes(["ACGU", "ACZ"])
    with pytest.raises(InputError, match="'sequence 1' is empty"):
        encoding.pad_codes([""])
    with pytest.raises(InputError, match="is 101 nt long"):
        encoding.pad_codes(["A" * 101])


def test_structure_pe_zeroes_padding_rows():
    pe = encoding.structure_pe(np.array([100, 40]))
    assert pe.shape == (2, 100, 111)
    assert (pe[1, 40:] == 0).all() and (pe[1, :40] != 0).any(axis=1).all()
    # relative position reaches 1 at the real end
    assert pe[1, 39, 1] == pytest.approx(1.0)


def test_classifier_pe_shape_and_first_row():
    pe = encoding.classifier_pe()
    assert pe.shape == (1, 6, 64)
    np.testing.assert_allclose(pe[0, 0, 0::2], 0.0)
    np.testing.assert_allclose(pe[0, 0, 1::2], 1.0)
