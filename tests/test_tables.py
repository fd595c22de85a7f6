"""routing_laws.tables: the one ``si`` formatter and the Table's cells."""
import math

import numpy as np
import pytest

from routing_laws import tables
from routing_laws.errors import ValidationError


@pytest.mark.parametrize("value, text", [
    (15e6, "15M"), (9.37e11, "937B"), (1.3e9, "1.3B"), (999_999, "1M"), (999.4, "999"), (512, "512"), (0, "0"),
    (-2e3, "-2k"), (1234, "1.23k"), (1e15, "1000T"), (9.439e133, "9.44e+133"), (-3e20, "-3e+20"), (0.00123, "0.00123"), (np.float32(2e5), "200k"),
    (np.int64(64), "64"), (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "n/a"),
])
def test_si_is_the_one_formatter(value, text):
    assert tables.si(value) == text


def test_si_refuses_what_is_not_a_number_and_tables_use_it():
    for bad in ("15M", None, True, [1.0]):
        with pytest.raises(ValidationError) as e:
            tables.si(bad)
        assert e.value.field == "value"
    t = tables.Table([{"N": 15e6, "cut": math.inf, "x": math.nan, "y": -math.inf}], ["N", "cut", "x", "y"],
                     {"N": "si", "cut": "si"})
    assert t.text().splitlines()[-1].split() == ["15M", "inf", "n/a", "-inf"]



def test_table_markdown_has_a_row_per_row_and_escapes_pipes():
    t = tables.Table([{"a": 1.23456, "b": "x|y"}, {"a": None, "b": "z"}], ["a", "b"], {"a": ".2f"}, "T")
    md = t.markdown().splitlines()
    assert md[:2] == ["**T**", ""]
    assert md[2:] == ["| a | b |", "|---|---|", "| 1.23 | x\\|y |", "|  | z |"]
