"""Executing an analytics expression into the DataFrame the caller asked for."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TypeAlias

import ibis.expr.types as ir
import pandas as pd
import polars as pl

from fideliza.core.errors import ValidationError

Output = Literal["pandas", "polars"]
DataFrame: TypeAlias = pd.DataFrame | pl.DataFrame


@contextmanager
def quiet_ibis() -> Iterator[None]:
    """Silences the deprecation warnings Ibis 12 and PySpark 4.0 raise on every query with
    DuckDB 2 and pandas 3 (their own calls, nothing the caller can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated")
        warnings.filterwarnings("ignore", message=r"The 'future.infer_string' option")
        warnings.filterwarnings("ignore", message=r"The copy keyword is deprecated")
        yield


def to_frame(expr: ir.Table, output: Output = "pandas") -> DataFrame:
    """Runs `expr` on its backend and returns the rows as a pandas or a polars DataFrame.

    Money stays exact: pandas gets `decimal.Decimal` objects, polars a Decimal column.
    """
    if output not in ("pandas", "polars"):
        raise ValidationError(f"must be 'pandas' or 'polars', got {output!r}", field="output")
    with quiet_ibis():
        return expr.to_pandas() if output == "pandas" else expr.to_polars()
