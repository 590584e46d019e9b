"""Demo and benchmark data: a realistic, seeded program population and its purchases."""

from fideliza.demo.generator import (
    CATALOG,
    DEFAULT_CHANNELS,
    DEFAULT_STORES,
    PROGRAM_TIMEZONE,
    CatalogProduct,
    DemoMember,
    DemoReturn,
    generate_members,
    generate_purchases,
    generate_returns,
    write_bench_csv,
    write_purchases_csv,
    write_purchases_parquet,
)

__all__ = [
    "CATALOG",
    "DEFAULT_CHANNELS",
    "DEFAULT_STORES",
    "PROGRAM_TIMEZONE",
    "CatalogProduct",
    "DemoMember",
    "DemoReturn",
    "generate_members",
    "generate_purchases",
    "generate_returns",
    "write_bench_csv",
    "write_purchases_csv",
    "write_purchases_parquet",
]
