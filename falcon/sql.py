"""Hand-written statements for the few hot paths where the ORM's per-query compilation costs more
than the query itself (run start, claim, checkpoint, finish, plan reads: see
docs/decisions/0013-run-throughput.md). Everything else uses the ORM.

Values go in through the model fields' own ``get_db_prep_save``/``get_db_prep_value`` and come out
through the converters the ORM applies (``from_db_value``, the backend's own), so these statements
read and write exactly what the ORM would, on PostgreSQL and on the embedded SQLite. Statement texts
are built once per shape from the model's metadata: no table or column name is typed twice.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple, TypeVar
from weakref import WeakKeyDictionary

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models

Converter = Callable[[Any, Any, Any], Any]
M = TypeVar("M", bound=models.Model)

# psycopg parses a statement's placeholders (a regular expression over the whole text) once per text
# and caches the result, but not for statements with more than 50 parameters: ORMs make too many
# shapes of those (psycopg discussion #628). Ours have few shapes, and a run's finishing statement
# (its outcome with its last steps, ~80 parameters) was parsed again on every run: ~14 % of a worker's
# CPU on a three-step run. The cache keeps its other bounds (128 texts of at most 4096 bytes), so
# raising this one costs at most half a megabyte. tests/test_sql.py checks that the cache is used.
STATEMENT_CACHE_MAX_PARAMS = 200
try:
    from psycopg import _queries as _psycopg_queries
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite alone does not need it
    pass
else:
    _psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = max(
        _psycopg_queries.MAX_CACHED_STATEMENT_PARAMS, STATEMENT_CACHE_MAX_PARAMS
    )


# --- Server-side prepared statements (PostgreSQL) -------------------------------------------------------
# PostgreSQL parses and plans every statement it is sent as text: for the hot statements (a run's
# claim, its finish with its steps, the trigger's lookup) planning was a third of the server's CPU
# per run (pg_stat_statements: ~0.9 ms of ~3.7 per queued run; decision 0013 §30). Each statement
# text here is prepared once per connection (``PREPARE falcon_N AS ...``, its placeholders numbered)
# and sent as ``EXECUTE falcon_N(...)``: the values are still quoted on the client (Django's
# client-side binding cursor, as every other statement), and several EXECUTEs still go in one
# simple-protocol string (the claim's round trip). PREPARE is not transactional: a prepared
# statement lives as long as the server session, whatever the transaction it was made in became.
# ``FALCON_DB_PREPARED_STATEMENTS=0`` sends the texts themselves (for a pooler in transaction mode,
# which hands each transaction a different server session).
PREPARED_MAX = 256  # statement texts per process; beyond, a text is sent as it is


class Prepared(NamedTuple):
    name: str
    text: str  # as the caller wrote it (``%s`` placeholders)
    prepare: str  # ``PREPARE name AS`` the text, with ``$1``... placeholders
    execute: str  # ``EXECUTE name(%s, ...)``


_by_text: dict[str, Prepared] = {}
_by_name: dict[str, Prepared] = {}
_registry_lock = threading.Lock()
# Per server session (psycopg connection), the names prepared on it; a pooled connection keeps them
# from one checkout to the next. ``None``: the session's statements are unknown (an error said one
# was missing or stale): everything is deallocated before the next PREPARE.
_sessions: WeakKeyDictionary[Any, set[str] | None] = WeakKeyDictionary()
_PLACEHOLDER = re.compile(r"%s")
# SQLSTATEs after which a session's prepared statements are not what this process thinks:
# invalid_sql_statement_name (one is missing), feature_not_supported ("cached plan must not change
# result type", after a migration changed a column a statement returns).
_STALE = {"26000", "0A000"}


def _register(text: str) -> Prepared | None:
    with _registry_lock:
        found = _by_text.get(text)
        if found is not None or len(_by_text) >= PREPARED_MAX:
            return found
        name = f"falcon_{len(_by_text)}"
        count = text.count("%s")
        numbers = iter(range(1, count + 1))
        body = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", text).replace("%%", "%")
        execute = f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"
        found = _by_text[text] = _by_name[name] = Prepared(name, text, f"PREPARE {name} AS {body}", execute)
        return found


def prepared(*texts: str) -> str:
    """What to send for ``texts`` (statements with ``%s`` placeholders, sent as one string with the
    parameters of each in order): on PostgreSQL, EXECUTEs of statements prepared on this connection
    (each prepared here the first time the connection meets it); elsewhere the texts themselves."""
    db = _db()
    if db.vendor != "postgresql" or not settings.FALCON_DB_PREPARED_STATEMENTS:
        return "; ".join(texts)
    db.ensure_connection()
    raw = db.connection
    known = _sessions.get(raw, set())
    out = []
    for text in texts:
        statement = _by_text.get(text) or _register(text)
        if statement is None:
            out.append(text)
            continue
        if known is None or statement.name not in known:
            # On the driver's connection, past Django's cursor: a session's upkeep, not one of the
            # caller's queries (query counts and execute wrappers see the EXECUTE alone).
            with db.wrap_database_errors:
                if known is None:
                    raw.execute("DEALLOCATE ALL")
                    known = set()
                raw.execute(statement.prepare)
            known.add(statement.name)
            _sessions[raw] = known
        out.append(statement.execute)
    return "; ".join(out)


def run(cursor: Any, texts: str | Sequence[str], params: Sequence[Any]) -> None:
    """``cursor.execute`` of ``prepared(texts)``. An error saying this session's prepared statements
    are not what this process recorded (deallocated behind its back, or planned before a migration
    changed a returned column) is raised as it is, and the session's statements are deallocated and
    prepared again by the next call."""
    statement = prepared(texts) if isinstance(texts, str) else prepared(*texts)
    try:
        cursor.execute(statement, params)
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) in _STALE and "EXECUTE falcon_" in statement:
            _sessions[_db().connection] = None
        raise


def readable(query: str) -> str:
    """A captured query with each ``EXECUTE falcon_N`` replaced by the text prepared under that name
    (its arguments follow it): for tests and logs that look for a table or a clause."""

    def text(match: re.Match[str]) -> str:
        found = _by_name.get(match.group(1))
        return match.group(0) if found is None else f"{found.text} /* {found.name} */"

    return re.sub(r"EXECUTE (falcon_\d+)", text, query)


def _db() -> Any:
    """The default connection itself. ``django.db.connection`` is a proxy that looks the connection
    up in a thread-local on every attribute access; preparing a run's rows makes ~100 such accesses
    (each field's ``get_db_prep_save`` reads ``connection.ops`` and more), so the hot paths below
    resolve it once per call."""
    return connections[DEFAULT_DB_ALIAS]


@cache  # a model's fields do not change once Django is set up; the hot paths look up ~90 a delivery
def field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field), f"{model.__name__}.{name} is not a concrete field"
    return found


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], name: str) -> str:
    return connection.ops.quote_name(field(model, name).column)


def param(model: type[models.Model], name: str, value: Any) -> Any:
    """A value for ``name``'s column, as the ORM would send it in a WHERE clause."""
    if value is None:
        return None
    found = field(model, name)
    if isinstance(found, models.ForeignKey):
        found = found.target_field
    return found.get_db_prep_value(value, _db(), prepared=False)


@cache
def _converters(
    model: type[models.Model], names: tuple[str, ...], vendor: str
) -> list[tuple[Any, list[Converter]]]:
    """Each column's expression and the converters the ORM applies to its values, in its order."""
    out = []
    for name in names:
        found = field(model, name)
        col = found.cached_col
        own = found.get_db_converters(connection)  # type: ignore[attr-defined]  # not in the stubs
        out.append((col, list(connection.ops.get_db_converters(col)) + list(own)))
    return out


def convert(model: type[models.Model], names: Sequence[str], row: Sequence[Any]) -> list[Any]:
    """A fetched row's values as Python values (the ORM's converters, in its order)."""
    values = list(row)
    db = _db()
    for i, (col, converters) in enumerate(_converters(model, tuple(names), db.vendor)):
        for converter in converters:
            values[i] = converter(values[i], col, db)
    return values


def select_one(
    model: type[models.Model], names: Sequence[str], where: str, params: Sequence[Any]
) -> list[Any] | None:
    """``SELECT names FROM model WHERE where`` (first row, converted), or None."""
    with connection.cursor() as cursor:
        run(cursor, _select_sql(model, tuple(names), where), list(params))
        row = cursor.fetchone()
    return None if row is None else convert(model, names, row)


@cache
def _select_sql(model: type[models.Model], names: tuple[str, ...], where: str) -> str:
    columns = ", ".join(column(model, n) for n in names)
    return f"SELECT {columns} FROM {table(model)} WHERE {where}"  # noqa: S608 - names from metadata


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.generated)


def insert_sql(model: type[models.Model], rows: int, suffix: str = "") -> str:
    return _insert_sql(model, rows, suffix)


@cache
def _insert_sql(model: type[models.Model], rows: int, suffix: str) -> str:
    fields = _insert_fields(model)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = ", ".join([one] * rows)
    return f"INSERT INTO {table(model)} ({columns}) VALUES {values}{suffix}"  # noqa: S608 - from metadata


def insert_params(objs: Iterable[models.Model]) -> list[Any]:
    """Every concrete column of each object, prepared as ``Model.save()`` would (defaults included)."""
    params: list[Any] = []
    db = _db()
    for obj in objs:
        for field in _insert_fields(type(obj)):
            params.append(field.get_db_prep_save(field.pre_save(obj, True), db))
    return params


def insert(objs: Sequence[models.Model], suffix: str = "", suffix_params: Sequence[Any] = ()) -> Any:
    """One multi-row INSERT of ``objs`` (all of one model); returns the first row of a RETURNING suffix."""
    if not objs:
        return None
    with connection.cursor() as cursor:
        run(cursor, _insert_sql(type(objs[0]), len(objs), suffix), [*insert_params(objs), *suffix_params])
        return cursor.fetchone() if suffix else None


def insert_notify(objs: Sequence[models.Model], channel: str, payload: str) -> None:
    """The INSERT and a ``pg_notify`` as one statement (PostgreSQL): one round trip, atomic by itself,
    the notification delivered when it commits. Elsewhere the INSERT alone."""
    if not objs:
        return
    insert_sql = _insert_sql(type(objs[0]), len(objs), "")
    params = insert_params(objs)
    if connection.vendor == "postgresql":
        insert_sql = f"WITH inserted AS ({insert_sql}) SELECT pg_notify(%s, %s)"
        params += [channel, payload]
    with connection.cursor() as cursor:
        run(cursor, insert_sql, params)


def execute(sql: str, params: Sequence[Any]) -> Any:
    """One statement; the first row it returns (if any)."""
    with connection.cursor() as cursor:
        run(cursor, sql, list(params))
        return cursor.fetchone() if cursor.description else None


def update(
    model: type[models.Model],
    values: dict[str, Any],
    where: str,
    params: Sequence[Any],
    *,
    add: dict[str, Any] | None = None,
    notify: tuple[str, str] | None = None,
) -> int:
    """``UPDATE model SET name = value, ..., name = name + amount WHERE where``: the rows changed.

    ``values`` are prepared by their fields as ``save()`` would; ``add`` increments numeric columns.
    ``notify`` (channel, payload): a ``pg_notify`` sent by the same statement when it changed a row
    (PostgreSQL; one round trip less), delivered when it commits.
    """
    return update_with(model, values, where, params, add=add, notify=notify)[0]


class Updated(NamedTuple):
    changed: int  # rows the UPDATE changed
    found: bool  # the ``exists`` query's answer (False without one)
    also: tuple[int, ...]  # rows each ``also`` statement returned


def update_with(
    model: type[models.Model],
    values: dict[str, Any],
    where: str,
    params: Sequence[Any],
    *,
    add: dict[str, Any] | None = None,
    notify: tuple[str, str] | None = None,
    insert_rows: Sequence[models.Model] = (),
    exists: tuple[str, Sequence[Any]] | None = None,
    also: Sequence[tuple[str, Sequence[Any]]] = (),
) -> Updated:
    """``update`` that also inserts ``insert_rows`` (rows of another model, e.g. a run's last steps with its
    outcome), runs the ``also`` statements (``(statement, params)``, data-modifying with RETURNING, e.g.
    a quota settlement) and answers ``exists`` (``(query, params)``: whether the query finds a row, in
    the statement's snapshot): one statement on PostgreSQL (one round trip and one commit, all or
    nothing; the ``also`` statements run even when the UPDATE matches no row), one after the other
    elsewhere."""
    add = add or {}
    db = _db()
    prepared = [field(model, name).get_db_prep_save(value, db) for name, value in values.items()]
    statement = _update_sql(model, tuple(values), tuple(add), where)
    all_params = [*prepared, *add.values(), *params]
    if db.vendor == "postgresql" and (notify is not None or insert_rows or exists is not None or also):
        ctes, before = [f"changed AS ({statement} RETURNING 1)"], []
        answers = ["(SELECT count(*) FROM changed)"]
        if insert_rows:
            ctes.insert(0, f"inserted AS ({_insert_sql(type(insert_rows[0]), len(insert_rows), '')})")
            before = insert_params(insert_rows)
        if notify is not None:
            ctes.append("told AS (SELECT pg_notify(%s, %s) FROM changed)")
            answers.append("(SELECT count(*) FROM told)")  # a CTE nobody reads would not run
            all_params += notify
        for n, (also_sql, also_params) in enumerate(also):
            ctes.append(f"also{n} AS ({also_sql})")
            answers.append(f"(SELECT count(*) FROM also{n})")  # noqa: S608 - a CTE name
            all_params += also_params
        if exists is not None:
            answers.append(f"EXISTS ({exists[0]})")
            all_params += exists[1]
        with connection.cursor() as cursor:
            run(cursor, f"WITH {', '.join(ctes)} SELECT {', '.join(answers)}", [*before, *all_params])
            row = cursor.fetchone()
        first_also = 2 if notify is not None else 1
        return Updated(
            int(row[0]),
            bool(exists is not None and row[-1]),
            tuple(int(n) for n in row[first_also : first_also + len(also)]),
        )
    insert(insert_rows)
    with connection.cursor() as cursor:
        cursor.execute(statement, all_params)
        changed = int(cursor.rowcount)
        counts = []
        for also_sql, also_params in also:
            cursor.execute(also_sql, list(also_params))
            counts.append(len(cursor.fetchall()))
        found = False
        if exists is not None:
            cursor.execute(f"SELECT EXISTS ({exists[0]})", list(exists[1]))
            found = bool(cursor.fetchone()[0])
    return Updated(changed, found, tuple(counts))


@cache
def _update_sql(model: type[models.Model], names: tuple[str, ...], added: tuple[str, ...], where: str) -> str:
    sets = [f"{column(model, n)} = %s" for n in names]
    sets += [f"{column(model, n)} = {column(model, n)} + %s" for n in added]
    return f"UPDATE {table(model)} SET {', '.join(sets)} WHERE {where}"  # noqa: S608 - from metadata


def select_models(
    parts: Sequence[tuple[type[models.Model], str, Sequence[str]]],
    joins: str,
    where: str,
    params: Sequence[Any],
) -> list[models.Model | None] | None:
    """One joined SELECT, its first row as one instance per part (None for an outer join's empty side);
    fields left out are deferred (loaded on access, as with ``.only()``). ``parts``: (model, alias,
    field names). None when no row matches."""
    key = tuple((model, alias, tuple(names)) for model, alias, names in parts)
    with connection.cursor() as cursor:
        run(cursor, _select_models_sql(key, joins, where), list(params))
        row = cursor.fetchone()
    if row is None:
        return None
    out: list[models.Model | None] = []
    offset = 0
    alias = _db().alias
    for model, _alias, names in key:
        values = convert(model, names, row[offset : offset + len(names)])
        offset += len(names)
        pk_at, fields, positions = _instance_layout(model, names)
        if pk_at is not None and values[pk_at] is None:
            out.append(None)
            continue
        out.append(model.from_db(alias, list(fields), [values[i] for i in positions]))
    return out


@cache
def _instance_layout(
    model: type[models.Model], names: tuple[str, ...]
) -> tuple[int | None, tuple[str, ...], tuple[int, ...]]:
    """Where the primary key is among ``names`` (or None), and the attribute names ``from_db`` takes
    (in the model's field order) with each one's position among ``names``."""
    pk_name = model._meta.pk.name
    pk_at = names.index(pk_name) if pk_name in names else None
    at = {field(model, n).attname: i for i, n in enumerate(names)}
    fields = tuple(f.attname for f in model._meta.concrete_fields if f.attname in at)
    return pk_at, fields, tuple(at[a] for a in fields)


@cache
def _select_models_sql(
    key: tuple[tuple[type[models.Model], str, tuple[str, ...]], ...], joins: str, where: str
) -> str:
    columns = ", ".join(f"{alias}.{column(model, n)}" for model, alias, names in key for n in names)
    return f"SELECT {columns} FROM {joins} WHERE {where} LIMIT 1"  # noqa: S608 - names from metadata


def select_all(model: type[M], where: str, params: Sequence[Any], *, limit: int) -> list[M]:
    """``SELECT * FROM model WHERE where LIMIT limit`` as model instances (every concrete field)."""
    names = tuple(f.name for f in model._meta.concrete_fields)
    attnames = [f.attname for f in model._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(f"{_select_sql(model, names, where)} LIMIT {int(limit)}", list(params))
        rows = cursor.fetchall()
    return [model.from_db(connection.alias, attnames, convert(model, names, row)) for row in rows]
