"""Streams purchases out of CSV or Parquet files in batches, one error per bad row."""

from __future__ import annotations

import csv
import dataclasses
import gc
import gzip
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any

from fideliza.core.errors import ValidationError
from fideliza.core.money import minor_units, require_currency, to_money
from fideliza.purchases.domain import Item, PurchaseInput, parse_purchase

REQUIRED_COLUMNS = ("external_id", "member_id", "occurred_at", "amount")
OPTIONAL_COLUMNS = ("currency", "channel", "store", "items")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

# Caches of already validated values keyed by the raw text; cleared when they grow past this.
_CACHE_LIMIT = 50_000
# JSON numbers become Decimals, never floats: `"unit_price": 2.50` is exact decimal text.
_JSON = json.JSONDecoder(parse_float=Decimal)
_JSON_SCAN: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]
_FINGERPRINT_CHUNK = 1 << 20
# What reading text can raise: bad CSV quoting, bytes that are not UTF-8, a broken gzip stream.
_UNREADABLE = (csv.Error, UnicodeDecodeError, OSError, EOFError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1}

Row = Sequence[Any]  # the values of COLUMNS, in that order; None or "" means absent


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that could not be read: its line, the field in error and the problem."""

    line: int
    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows `first_line`..`last_line` of a file: the purchases read and the rows in error."""

    first_line: int
    purchases: list[tuple[int, PurchaseInput]]
    errors: list[RowError]
    last_line: int

    @property
    def rows(self) -> int:
        """How many data rows this batch covers (what to add to `skip_rows` to resume)."""
        return self.last_line - self.first_line + 1


def read_purchases(
    path: Path, *, program_currency: str, batch_size: int = 10_000, skip_rows: int = 0
) -> Iterator[Batch]:
    """Reads a purchase file (CSV or Parquet, by extension) in batches of `batch_size` rows.

    Lines count as a person counts them: in a CSV the header is line 1 and the first data row
    line 2; in Parquet the first row is line 1. `skip_rows` skips that many data rows (the sum of
    `Batch.rows` already processed), to resume an interrupted import. The header is checked
    before anything else is read: a missing required column raises a ValidationError naming it.
    """
    require_currency(program_currency, field="program_currency")
    if batch_size <= 0:
        raise ValidationError(f"must be positive, got {batch_size}", field="batch_size")
    if skip_rows < 0:
        raise ValidationError(f"must not be negative, got {skip_rows}", field="skip_rows")
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"is not a file: {str(path)!r}", field="path")
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return _read_csv(path, program_currency, batch_size, skip_rows)
    if name.endswith(PARQUET_SUFFIXES):
        return _read_parquet(path, program_currency, batch_size, skip_rows)
    raise ValidationError(
        f"must end in {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, got {path.name!r}",
        field="path",
    )


def file_fingerprint(path: Path) -> str:
    """Returns the SHA-256 of the file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_FINGERPRINT_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- the header -------------------------------------------------------------------------------


def _column_positions(header: Sequence[str]) -> list[int | None]:
    """Maps each of COLUMNS to its position in `header` (None when absent), refusing bad headers."""
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name in seen and name in COLUMNS:
            raise ValidationError(f"appears twice in the header ({names})", field=name)
        seen.add(name)
    missing = [column for column in REQUIRED_COLUMNS if column not in seen]
    if missing:
        also = f"; {', '.join(missing[1:])} missing too" if missing[1:] else ""
        raise ValidationError(
            f"the header has no {missing[0]} column, which is required (found: "
            f"{', '.join(names) or 'nothing'}{also})",
            field=missing[0],
        )
    return [names.index(column) if column in seen else None for column in COLUMNS]


# --- CSV --------------------------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops the byte-order mark spreadsheets put in front of the header.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def _read_csv(path: Path, currency: str, batch_size: int, skip_rows: int) -> Iterator[Batch]:
    # Open and check the header now, so a bad header fails at the call, before any iteration.
    try:
        stream = _open_text(path)
    except OSError as exc:
        raise ValidationError(f"cannot be opened: {exc.strerror or exc}", field="path") from None
    try:
        reader = csv.reader(stream, strict=True)
        header = _next_record(reader, line=1)
        if header is None:
            raise ValidationError("is empty: it has no header row", field="file")
        positions = _column_positions(header)
    except BaseException:
        stream.close()
        raise
    return _csv_batches(stream, reader, positions, len(header), currency, batch_size, skip_rows)


def _next_record(reader: Iterator[list[str]], *, line: int) -> list[str] | None:
    try:
        return next(reader, None)
    except _UNREADABLE as exc:
        raise _unreadable(exc, line) from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while a batch is parsed or ingested (never across
    a yield).

    A batch allocates tens of thousands of objects that are acyclic and kept alive until the
    batch is handed over; each few hundred of them would start a collection that rescans all
    of them (and the caches) again, a quarter of the reading time. Reference counting still
    frees everything at once; the collector resumes, as it was, before the caller sees the batch.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unreadable(exc: Exception, line: int) -> ValidationError:
    if isinstance(exc, UnicodeDecodeError):
        # Text is decoded ahead in chunks, so the bad byte is somewhere at or after `line`.
        bad = exc.object[exc.start : exc.start + 1]
        return ValidationError(
            f"is not UTF-8 text: byte {bad!r} ({exc.reason}) at line {line} or soon after",
            field="file",
        )
    if isinstance(exc, csv.Error):
        return ValidationError(f"cannot be read as CSV at line {line}: {exc}", field="file")
    return ValidationError(f"cannot be read at line {line} or soon after: {exc}", field="file")


def _csv_batches(
    stream: IO[str],
    reader: Iterator[list[str]],
    positions: list[int | None],
    width: int,
    currency: str,
    batch_size: int,
    skip_rows: int,
) -> Iterator[Batch]:
    with stream:
        line = 1
        try:
            for _ in islice(reader, skip_rows):
                line += 1
        except _UNREADABLE as exc:
            raise _unreadable(exc, line + 1) from None
        parser = _Parser(currency)
        while True:
            with collector_paused():
                batch, failure = parser.parse_csv_records(
                    islice(reader, batch_size), positions, width, line + 1
                )
            if batch is not None:
                yield batch  # the rows before an unreadable one are not lost
                line = batch.last_line
            if failure is not None:
                raise failure
            if batch is None or batch.rows < batch_size:
                return


# --- Parquet ----------------------------------------------------------------------------------


def _read_parquet(path: Path, currency: str, batch_size: int, skip_rows: int) -> Iterator[Batch]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ValidationError(f"cannot be read as Parquet: {exc}", field="file") from None
    positions = _column_positions(parquet.schema_arrow.names)
    return _parquet_batches(parquet, positions, currency, batch_size, skip_rows)


def _parquet_batches(
    parquet: Any, positions: list[int | None], currency: str, batch_size: int, skip_rows: int
) -> Iterator[Batch]:
    names = parquet.schema_arrow.names
    present = [(index, names[p]) for index, p in enumerate(positions) if p is not None]
    # Skip whole row groups without reading them, then the rest of the skip inside the first.
    metadata = parquet.metadata
    groups: list[int] = []
    to_skip = skip_rows
    for group in range(metadata.num_row_groups):
        rows_in_group = metadata.row_group(group).num_rows
        if not groups and to_skip >= rows_in_group:
            to_skip -= rows_in_group
            continue
        groups.append(group)
    parser = _Parser(currency)
    line = skip_rows  # the last line already done; Parquet lines are row index + 1
    pending: list[list[Any]] = [[] for _ in present]
    with parquet:
        if not groups:
            return
        record_batches = parquet.iter_batches(
            batch_size=batch_size, row_groups=groups, columns=[name for _, name in present]
        )
        for record_batch in record_batches:
            if to_skip:
                dropped = min(to_skip, record_batch.num_rows)
                record_batch = record_batch.slice(dropped)
                to_skip -= dropped
            for values, column in zip(pending, record_batch.columns, strict=True):
                values.extend(_python_values(column))
            while len(pending[0]) >= batch_size:
                chunk = [values[:batch_size] for values in pending]
                pending = [values[batch_size:] for values in pending]
                with collector_paused():
                    batch = parser.parse_columns(chunk, [i for i, _ in present], line + 1)
                yield batch
                line += batch_size
        if pending[0]:
            with collector_paused():
                batch = parser.parse_columns(pending, [i for i, _ in present], line + 1)
            yield batch


def _python_values(array: Any) -> list[Any]:
    """The values of an Arrow array as Python objects the fast path reads best.

    Decimals become their text ("4.90", what to_money makes of either), aware timestamps
    aware UTC datetimes (the same instants) and lists of structs lists of dicts, each built
    column by column: pyarrow's own to_pylist is several times slower on these types.
    """
    import pyarrow as pa

    kind = array.type
    if pa.types.is_decimal(kind):
        return list(array.cast(pa.string()).to_pylist())
    if pa.types.is_timestamp(kind) and kind.tz is not None and kind.unit in _MICROSECONDS:
        step = _MICROSECONDS[kind.unit]
        try:
            return [
                None if ticks is None else _EPOCH + timedelta(microseconds=ticks * step)
                for ticks in array.cast(pa.int64()).to_pylist()
            ]
        except OverflowError:  # beyond datetime's years: let pyarrow say what it makes of it
            return list(array.to_pylist())
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(
        kind.value_type
    ):
        return _struct_lists(array)
    return list(array.to_pylist())


def _struct_lists(array: Any) -> list[Any]:
    offsets = array.offsets.to_pylist()
    structs = array.values.slice(offsets[0], offsets[-1] - offsets[0])
    names = [structs.type.field(i).name for i in range(structs.type.num_fields)]
    if not names:
        return list(array.to_pylist())
    columns = [_python_values(structs.field(i)) for i in range(len(names))]
    present = structs.is_valid().to_pylist()
    items = [
        dict(zip(names, values, strict=True)) if valid else None
        for valid, values in zip(present, zip(*columns, strict=True), strict=True)
    ]
    base = offsets[0]
    return [
        items[start - base : end - base] if valid else None
        for valid, start, end in zip(
            array.is_valid().to_pylist(), offsets[:-1], offsets[1:], strict=True
        )
    ]


# --- rows: the reference path -----------------------------------------------------------------


def decode_items(value: object) -> object:
    """Turns an `items` cell (a JSON array text, or a list already) into a list of mappings."""
    if isinstance(value, str):
        try:
            value = _JSON.decode(value)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"is not valid JSON ({exc.msg} at character {exc.pos})", field="items"
            ) from None
        except RecursionError:
            raise ValidationError("is JSON nested too deeply", field="items") from None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ValidationError(
                    f"must be an object with sku, quantity, unit_price, got {item!r}",
                    field=f"items[{index}]",
                )
    return value


def row_to_payload(row: Row) -> dict[str, Any]:
    """Turns the values of one row (in COLUMNS order) into the payload parse_purchase takes."""
    payload: dict[str, Any] = {}
    for column, value in zip(COLUMNS, row, strict=True):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty cell is an absent field
        payload[column] = decode_items(value) if column == "items" else value
    return payload


def parse_row_reference(row: Row, *, program_currency: str) -> PurchaseInput:
    """Validates one row the slow, obviously-right way: payload → parse_purchase."""
    return parse_purchase(row_to_payload(row), program_currency=program_currency)


# --- rows: the fast path ----------------------------------------------------------------------


class _Parser:
    """Reads rows fast, falling back to the reference path for anything out of the ordinary.

    The fast path does the same checks as parse_purchase on the common shapes (text cells, JSON
    items with string prices, typed Parquet values) and remembers validated amounts, prices and
    baskets by their text. It returns None whenever a value is unusual or invalid; the reference
    path then decides, so every error message is the reference path's own.
    """

    __slots__ = (
        "basket_misses",
        "baskets",
        "batches",
        "currency",
        "decimals",
        "line_misses",
        "lines",
        "money",
        "read_by_line",
        "remember_baskets",
    )

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.decimals = minor_units(currency)
        self.money: dict[str, Decimal] = {}
        self.baskets: dict[str, tuple[Item, ...]] = {}
        self.remember_baskets = True
        self.lines: dict[str, Item] = {}  # the text of a basket line → its Item
        self.read_by_line = True
        self.basket_misses = self.line_misses = self.batches = 0

    def parse_csv_records(
        self, records: Iterator[list[str]], positions: list[int | None], width: int, first_line: int
    ) -> tuple[Batch | None, ValidationError | None]:
        """Parses CSV records (lists of `width` cells) from `first_line` on.

        Returns the batch (None if there was no record) and the error that stopped the reading
        (None if the records ran out).
        """
        purchases: list[tuple[int, PurchaseInput]] = []
        errors: list[RowError] = []
        pick = _picker(positions, width)
        fast = self.fast
        line = first_line - 1
        failure = None
        # Records are parsed as they are read, so each list of cells is freed at once.
        try:
            for record in records:
                line += 1
                if len(record) != width:
                    if record:  # a blank line is no row at all
                        errors.append(_width_error(record, positions, width, line))
                    continue
                row = record if pick is None else pick(record)
                purchase = fast(row)
                if purchase is None:
                    self._slow(row, line, purchases, errors)
                else:
                    purchases.append((line, purchase))
        except _UNREADABLE as exc:
            failure = _unreadable(exc, line + 1)
        if line < first_line:
            return None, failure
        self.review_caches(line - first_line + 1)
        return Batch(first_line, purchases, errors, line), failure

    def parse_columns(self, columns: list[list[Any]], indices: list[int], first_line: int) -> Batch:
        """Parses rows given column-wise (values of COLUMNS[indices[k]] in columns[k])."""
        count = len(columns[0])
        full: list[list[Any]] = [[None] * count for _ in COLUMNS]
        for index, values in zip(indices, columns, strict=True):
            full[index] = values
        purchases: list[tuple[int, PurchaseInput]] = []
        errors: list[RowError] = []
        fast = self.fast
        for line, row in enumerate(zip(*full, strict=True), start=first_line):
            purchase = fast(row)
            if purchase is None:
                self._slow(row, line, purchases, errors)
            else:
                purchases.append((line, purchase))
        self.review_caches(count)
        return Batch(first_line, purchases, errors, first_line + count - 1)

    def _slow(
        self,
        row: Row,
        line: int,
        purchases: list[tuple[int, PurchaseInput]],
        errors: list[RowError],
    ) -> None:
        try:
            purchases.append((line, parse_row_reference(row, program_currency=self.currency)))
        except ValidationError as exc:
            errors.append(RowError(line, exc.field, exc.message))
        except (ArithmeticError, ValueError) as exc:
            # parse_purchase lets a few values escape as raw errors (a decimal too large to
            # quantize, a non-ASCII digit as quantity): still one bad row, never a failed import.
            errors.append(RowError(line, None, f"cannot be read: {exc.__class__.__name__} {exc}"))

    def fast(self, row: Row) -> PurchaseInput | None:
        """Returns the row's purchase, or None to let the reference path decide."""
        external_id, member_ref, occurred_at, amount, currency, channel, store, items = row
        if type(external_id) is not str or type(member_ref) is not str:
            return None
        external_id = external_id.strip()
        member_ref = member_ref.strip()
        if not external_id or not member_ref:
            return None
        if type(occurred_at) is str:
            try:
                moment = datetime.fromisoformat(occurred_at.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:  # parsed offsets are fixed: utcoffset() is never None
                return None
        elif type(occurred_at) is datetime:
            moment = occurred_at
            if moment.tzinfo is None or moment.utcoffset() is None:
                return None
        else:
            return None
        if (
            currency is not None
            and currency != self.currency
            and (type(currency) is not str or currency.strip())
        ):
            return None
        total = self.money.get(amount) if type(amount) is str else None
        if total is None:
            total = self._money(amount)
            if total is None:
                return None
        if channel is not None:
            if type(channel) is not str:
                return None
            channel = channel.strip() or None
        if store is not None:
            if type(store) is not str:
                return None
            store = store.strip() or None
        basket: tuple[Item, ...] | None
        if items is None:
            basket = ()
        elif type(items) is str:
            basket = self.baskets.get(items)
            if basket is None:
                basket = self._basket(items)
        elif type(items) is list:
            basket = self._items(items)
        else:
            return None
        if basket is None:
            return None
        return _new_purchase(
            external_id,
            member_ref,
            moment.astimezone(UTC),
            total,
            self.currency,
            channel,
            store,
            basket,
            {},
        )

    def _money(self, value: object) -> Decimal | None:
        """A non-negative amount of the program's currency, or None; text is remembered."""
        if type(value) is str:
            amount = self.money.get(value)
            if amount is not None:
                return amount
            amount = self._plain_money(value)
            if amount is None:
                amount = self._reference_money(value)
                if amount is None:
                    return None
            if len(self.money) >= _CACHE_LIMIT:
                self.money.clear()
            self.money[value] = amount
            return amount
        if type(value) is Decimal or type(value) is int:
            return self._reference_money(value)
        return None

    def _plain_money(self, text: str) -> Decimal | None:
        """Reads "123.45" (exactly the currency's decimals, ASCII digits, no sign) directly.

        Such text is what to_money would quantize to itself, so Decimal(text) is its result.
        """
        whole, dot, fraction = text.partition(".")
        if (
            len(fraction) == self.decimals
            and bool(dot) == bool(self.decimals)
            and 0 < len(whole) <= 14  # what NUMERIC(18, 4) holds; longer goes to to_money
            and text.isascii()
            and whole.isdigit()
            and (not fraction or fraction.isdigit())
        ):
            return Decimal(text)
        return None

    def _reference_money(self, value: str | int | Decimal) -> Decimal | None:
        try:
            amount = to_money(value, self.currency)
        except (ValidationError, ArithmeticError):
            return None
        return None if amount < 0 else amount

    def _basket(self, text: str) -> tuple[Item, ...] | None:
        """The items of a JSON array text, or None; remembered by the text while that pays."""
        basket = self._basket_by_line(text) if self.read_by_line else None
        if basket is None:
            basket = ()
            if text.strip():
                try:
                    # The scanner alone: text with surrounding blanks goes to the reference path.
                    raw_items, end = _JSON_SCAN(text, 0)
                except (StopIteration, ValueError, RecursionError):
                    return None
                if end != len(text) or type(raw_items) is not list:
                    return None
                items = [self._item(raw) for raw in raw_items]
                if None in items:
                    return None
                basket = tuple(items)  # type: ignore[arg-type]
        self.basket_misses += 1
        if self.remember_baskets:
            if len(self.baskets) >= _CACHE_LIMIT:
                self.baskets.clear()
            self.baskets[text] = basket
        return basket

    def _basket_by_line(self, text: str) -> tuple[Item, ...] | None:
        """Reads `[{…},{…}]` one object at a time, each remembered by its text, or gives None.

        Baskets differ more than their lines do. Splitting at "},{" is wrong only when a string
        holds those characters, and then a piece ends inside a string, which never reads as an
        object: a basket whose every piece is a known or readable item was split right.
        """
        if not (text.startswith("[{") and text.endswith("}]")):
            return None
        separator = "},{" if "},{" in text else "}, {"
        lines = self.lines
        basket: list[Item] = []
        for piece in text[2:-2].split(separator):
            item = lines.get(piece)
            if item is None:
                try:
                    raw, end = _JSON_SCAN("{" + piece + "}", 0)
                except (StopIteration, ValueError, RecursionError):
                    return None
                if end != len(piece) + 2:
                    return None
                item = self._item(raw)
                if item is None:
                    return None
                self.line_misses += 1
                if len(lines) >= _CACHE_LIMIT:
                    lines.clear()
                lines[piece] = item
            basket.append(item)
        return tuple(basket)

    def _items(self, raw_items: list[Any]) -> tuple[Item, ...] | None:
        items = [self._item(raw) for raw in raw_items]
        return None if None in items else tuple(items)  # type: ignore[arg-type]

    def _item(self, raw: object) -> Item | None:
        """One basket line (a JSON object), or None."""
        if type(raw) is not dict:
            return None
        sku = raw.get("sku")
        quantity = raw.get("quantity", 1)
        category = raw.get("category")
        # Exact types only: bool is an int, and a bool quantity is an error.
        if type(sku) is not str or type(quantity) is not int or quantity <= 0:
            return None
        sku = sku.strip()
        if not sku:
            return None
        if category is not None:
            if type(category) is not str:
                return None
            category = category.strip() or None
        price = self._money(raw.get("unit_price"))
        if price is None:
            return None
        return _new_item(sku, quantity, price, category)

    def review_caches(self, rows: int) -> None:
        """After a batch: stops remembering what was mostly new, and retries every 16 batches.

        Baskets and lines that repeat (a catalog, a menu) make the caches pay many times over;
        all-different ones only make them cost.
        """
        self.batches += 1
        if self.batches % 16 == 0:
            self.remember_baskets = self.read_by_line = True
        elif rows >= 1_000:
            if self.remember_baskets and self.basket_misses > rows // 2:
                self.remember_baskets = False
                self.baskets.clear()
            if self.read_by_line and self.line_misses > rows // 2:
                self.read_by_line = False
                self.lines.clear()
        self.basket_misses = self.line_misses = 0


def _plain_dataclass(cls: type, names: tuple[str, ...]) -> bool:
    """Whether `cls` is a slotted dataclass whose __init__ only stores `names`, in that order."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return False
    fields = dataclasses.fields(cls)
    return (
        tuple(f.name for f in fields) == names == getattr(cls, "__slots__", ())
        and all(f.init for f in fields)
        and all(type(vars(cls).get(name)).__name__ == "member_descriptor" for name in names)
    )


# A frozen dataclass sets each field through object.__setattr__; filling the slots directly
# halves the cost of the most numerous objects of an import. That is the same thing only while
# __init__ does nothing else, so anything unexpected gets the real constructor.
def _purchase_factory() -> Callable[..., PurchaseInput]:
    names = ("external_id", "member_ref", "occurred_at", "amount", "currency", "channel",
             "store", "items", "attributes")  # fmt: skip
    if not _plain_dataclass(PurchaseInput, names):
        return PurchaseInput
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = (vars(PurchaseInput)[name].__set__ for name in names)

    def make(
        a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any, h: Any, i: Any
    ) -> PurchaseInput:
        purchase = new(PurchaseInput)
        s0(purchase, a)
        s1(purchase, b)
        s2(purchase, c)
        s3(purchase, d)
        s4(purchase, e)
        s5(purchase, f)
        s6(purchase, g)
        s7(purchase, h)
        s8(purchase, i)
        return purchase

    return make


def _item_factory() -> Callable[[str, int, Decimal, str | None], Item]:
    names = ("sku", "quantity", "unit_price", "category")
    if not _plain_dataclass(Item, names):
        return Item
    new = object.__new__
    s0, s1, s2, s3 = (vars(Item)[name].__set__ for name in names)

    def make(sku: str, quantity: int, unit_price: Decimal, category: str | None) -> Item:
        item = new(Item)
        s0(item, sku)
        s1(item, quantity)
        s2(item, unit_price)
        s3(item, category)
        return item

    return make


_new_purchase = _purchase_factory()
_new_item = _item_factory()


def _width_error(record: list[str], positions: list[int | None], width: int, line: int) -> RowError:
    size = len(record)
    if size < width:
        for column, position in zip(COLUMNS, positions, strict=True):
            if position is not None and position >= size:
                return RowError(
                    line, column, f"is missing: the row has {size} fields, the header {width}"
                )
    return RowError(line, None, f"has {size} fields but the header has {width}")


def _picker(positions: list[int | None], width: int) -> Callable[[list[str]], Row] | None:
    """Returns a function that takes a record's cells in COLUMNS order ("" for an absent one).

    None means the record is already in that order.
    """
    if positions == list(range(len(COLUMNS))):
        if width == len(COLUMNS):
            return None
        return lambda record: record[: len(COLUMNS)]
    if all(p is not None for p in positions):
        indices = [p for p in positions if p is not None]
        return lambda record: [record[i] for i in indices]
    return lambda record: ["" if p is None else record[p] for p in positions]
