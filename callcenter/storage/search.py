"""Full-text search of call transcripts, the same on SQLite and PostgreSQL.

Chinese has no spaces, so words cannot be the index's terms. Each customer and agent line is
cut into overlapping character bigrams (``车洗得不干净`` -> ``车洗 洗得 得不 不干 干净``); a query
becomes the phrase of its own bigrams, which matches exactly the calls whose text contains the
query as a substring (bigrams of different lines never sit together, so a phrase never spans
two lines). Latin words and numbers are indexed whole. Robot lines are not indexed: they are
the script, the same in every call, and would make every query match everything.

The index is derived data, rebuilt from ``utterances`` at any time, and so lives outside the
Alembic schema (like Redis): ``ensure()`` creates it when missing.

- SQLite: an FTS5 table ``search_calls`` whose rowid is the call id.
- PostgreSQL: a table ``search_calls`` with a ``tsvector`` built from our own terms (never from
  a text-search parser, whose idea of a Chinese word depends on the server's locale), GIN-indexed,
  queried with a phrase ``tsquery``.

Calls are indexed once they have ended: by the dialer after it stores a call
(``TranscriptIndex(engine).index_calls(conn, [call_id])``) and, as a catch-up, by
:meth:`TranscriptIndex.catch_up` before each search, so nothing is missed when a writer does not
index. Runs on the caller's thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

INDEXED_SPEAKERS = ("customer", "agent")
TABLE = "search_calls"
STATE = "search_state"  # name -> value; "watermark": the latest ended_at indexed
# Calls that ended up to this long before the newest indexed one are re-checked by catch_up:
# workers' clocks and commit delays disagree by seconds, not minutes.
CATCH_UP_GRACE = dt.timedelta(minutes=10)
# A call that ended after T started after T minus this (calls are capped at minutes), which lets
# catch_up find recently ended calls through the index on calls.started_at: there is none on
# ended_at, and scanning 200,000 calls before every search cost seconds under load.
LONGEST_CALL = dt.timedelta(hours=6)
PG_MATCH_CAP = 20_000
# PostgreSQL keeps positions up to 16383 in a tsvector; later terms would all share that one.
_PG_MAX_POSITION = 16383
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"[{_CJK}]+|[a-z0-9]+")


class QueryError(ValueError):
    """A search text that cannot be searched; ``kind`` says why, for a message in the user's
    language: ``single_character`` (a lone Chinese character) or ``empty`` (nothing searchable)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def _runs(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).lower()
    return _RUN.findall(folded)


def _run_terms(run: str) -> list[str]:
    if not ("\u3400" <= run[0] <= "\ufaff"):
        return [run]
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def document_terms(lines: Iterable[str]) -> list[str]:
    """The index terms of a call's lines, in order."""
    terms: list[str] = []
    for line in lines:
        for run in _runs(line):
            terms.extend(_run_terms(run))
    return terms


def query_phrases(query: str) -> list[list[str]]:
    """The phrases a query must all match (one per run of Chinese characters or Latin word).

    Raises:
        QueryError: nothing searchable, or a lone Chinese character (too common to mean anything).
    """
    phrases = []
    for run in _runs(query):
        if len(run) == 1 and "\u3400" <= run <= "\ufaff":
            raise QueryError("search for at least two Chinese characters together", "single_character")
        phrases.append(_run_terms(run))
    if not phrases:
        raise QueryError("the search text has no letters, digits or Chinese characters", "empty")
    return phrases


def _fts5_query(phrases: list[list[str]]) -> str:
    # Terms hold only letters, digits and CJK characters: nothing to escape inside the quotes.
    return " AND ".join('"' + " ".join(p) + '"' for p in phrases)


def _pg_lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_tsvector(terms: list[str]) -> str:
    positions: dict[str, list[int]] = {}
    for i, term in enumerate(terms, start=1):
        positions.setdefault(term, []).append(min(i, _PG_MAX_POSITION))
    return " ".join(f"{_pg_lexeme(t)}:{','.join(map(str, sorted(set(p))))}" for t, p in positions.items())


def _pg_tsquery(phrases: list[list[str]]) -> str:
    return " & ".join("(" + " <-> ".join(_pg_lexeme(t) for t in p) + ")" for p in phrases)


class TranscriptIndex:
    """The transcript index of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"no transcript search for {self.dialect}")
        self._ready = False

    # -- schema ---------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the index when missing (cheap when it exists)."""
        if self._ready:
            return
        with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                # unicode61 splits our space-separated terms and keeps CJK bigrams whole;
                # ended_at is stored, not indexed, for catch_up's watermark.
                conn.exec_driver_sql(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5("
                    "terms, ended_at UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')"
                )
            else:
                conn.exec_driver_sql(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                    "call_id integer PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE, "
                    "ended_at timestamp, tsv tsvector NOT NULL)"
                )
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_tsv ON {TABLE} USING gin (tsv)")
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_ended_at ON {TABLE} (ended_at)")
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {STATE} (name VARCHAR(32) PRIMARY KEY, value TEXT)")
        self._ready = True

    # -- writing --------------------------------------------------------------------------------

    def index_calls(self, conn: Connection, call_ids: Iterable[int]) -> int:
        """(Re)index the given calls from their stored utterances, in the caller's transaction."""
        ids = sorted({int(i) for i in call_ids})
        if not ids:
            return 0
        self.ensure()
        lines: dict[int, list[str]] = {i: [] for i in ids}
        ended: dict[int, dt.datetime | None] = {}
        for chunk in _chunks(ids, 500):
            for call_id, ended_at in conn.execute(
                sa.text("SELECT id, ended_at FROM calls WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": chunk},
            ):
                ended[call_id] = ended_at
            for call_id, text in conn.execute(
                sa.text(
                    "SELECT call_id, text FROM utterances WHERE call_id IN :ids AND speaker IN :speakers "
                    "ORDER BY call_id, seq"
                ).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("speakers", expanding=True)),
                {"ids": chunk, "speakers": list(INDEXED_SPEAKERS)},
            ):
                lines[call_id].append(text)
        rows = [(i, document_terms(lines[i]), ended[i]) for i in ids if i in ended]
        self._write(conn, rows)
        return len(rows)

    def _write(self, conn: Connection, rows: list[tuple[int, list[str], dt.datetime | None]]) -> None:
        if not rows:
            return
        ids = [r[0] for r in rows]
        for chunk in _chunks(ids, 500):
            conn.execute(
                sa.text(f"DELETE FROM {TABLE} WHERE {self._id_column} IN :ids")
                .bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": chunk},
            )
        self._advance(conn, max((e for _i, _t, e in rows if e is not None), default=None))
        if self.dialect == "sqlite":
            conn.execute(
                sa.text(f"INSERT INTO {TABLE} (rowid, terms, ended_at) VALUES (:id, :terms, :ended)"),
                [{"id": i, "terms": " ".join(t), "ended": _sqlite_time(e)} for i, t, e in rows],
            )
        else:
            conn.execute(
                sa.text(f"INSERT INTO {TABLE} (call_id, ended_at, tsv) VALUES (:id, :ended, CAST(:tsv AS tsvector))"),
                [{"id": i, "ended": e, "tsv": _pg_tsvector(t)} for i, t, e in rows],
            )

    def _watermark(self, conn: Connection) -> dt.datetime | None:
        value = conn.execute(sa.text(f"SELECT value FROM {STATE} WHERE name = 'watermark'")).scalar()
        return dt.datetime.fromisoformat(value) if value else None

    def _advance(self, conn: Connection, ended: dt.datetime | str | None) -> None:
        """Move the watermark forward to ``ended`` (never back)."""
        if ended is None:
            return
        value = _sqlite_time(ended)  # one text form on both databases, so comparing strings orders times
        conn.execute(sa.text(f"INSERT INTO {STATE} (name, value) VALUES ('watermark', :v) ON CONFLICT (name) DO NOTHING"),
                     {"v": value})
        conn.execute(sa.text(f"UPDATE {STATE} SET value = :v WHERE name = 'watermark' AND value < :v"), {"v": value})

    @property
    def _id_column(self) -> str:
        return "rowid" if self.dialect == "sqlite" else "call_id"

    def catch_up(self, *, limit: int = 20_000) -> int:
        """Index ended calls that are not yet in the index (newest watermark minus a grace)."""
        self.ensure()
        with self.engine.begin() as conn:
            newest = self._watermark(conn)
            query = "SELECT id, ended_at FROM calls WHERE ended_at IS NOT NULL"
            params: dict = {"limit": limit}
            if newest is not None:
                query += " AND ended_at >= :since AND started_at >= :started"
                since, started = newest - CATCH_UP_GRACE, newest - CATCH_UP_GRACE - LONGEST_CALL
                params["since"] = _sqlite_time(since) if self.dialect == "sqlite" else since
                params["started"] = _sqlite_time(started) if self.dialect == "sqlite" else started
            rows = conn.execute(sa.text(query + " ORDER BY ended_at LIMIT :limit"), params).all()
            if not rows:
                return 0
            candidates = [r[0] for r in rows]
            self._advance(conn, max(r[1] for r in rows))
            present: set[int] = set()
            for chunk in _chunks(candidates, 500):
                present.update(r[0] for r in conn.execute(
                    sa.text(f"SELECT {self._id_column} FROM {TABLE} WHERE {self._id_column} IN :ids")
                    .bindparams(sa.bindparam("ids", expanding=True)), {"ids": chunk}))
            missing = [i for i in candidates if i not in present]
            done = self.index_calls(conn, missing)
        if done:
            logger.info("transcript index: %d calls added", done)
        return done

    def rebuild(self, *, batch: int = 2000, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop and rebuild the whole index from the stored utterances."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STATE}")
        self._ready = False
        self.ensure()
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM calls WHERE ended_at IS NOT NULL ORDER BY id"))]
        done = 0
        for chunk in _chunks(ids, batch):
            with self.engine.begin() as conn:
                done += self.index_calls(conn, chunk)
            if progress:
                progress(done, len(ids))
        return done

    # -- reading --------------------------------------------------------------------------------

    def matching_ids(self, query: str) -> sa.TextualSelect:
        """A ``SELECT`` of the ids of calls whose indexed text contains ``query``.

        Raises:
            QueryError: see :func:`query_phrases`.
        """
        phrases = query_phrases(query)
        self.ensure()
        if self.dialect == "sqlite":
            return sa.text(f"SELECT rowid AS call_id FROM {TABLE} WHERE {TABLE} MATCH :fts_query").bindparams(
                fts_query=_fts5_query(phrases)).columns(sa.column("call_id", sa.Integer))
        return sa.text(
            f"SELECT call_id FROM {TABLE} WHERE tsv @@ CAST(:ts_query AS tsquery) ORDER BY call_id DESC LIMIT :cap"
        ).bindparams(ts_query=_pg_tsquery(phrases), cap=PG_MATCH_CAP).columns(sa.column("call_id", sa.Integer))

    def matching(self, id_column, query: str) -> sa.ColumnElement[bool]:
        """A WHERE clause keeping the calls (``id_column``) whose text contains ``query``.

        On PostgreSQL the matches are gathered first (``id = ANY(ARRAY(...))``): as ``IN (...)``, the
        planner walked calls newest first probing the index for each, 250-950 ms for a rare word
        among 200,000 calls, against 10 ms this way. A word in most calls keeps its newest
        :data:`PG_MATCH_CAP` matches (ids grow with time), which is all a page of 25 needs.

        Raises:
            QueryError: see :func:`query_phrases`.
        """
        ids = self.matching_ids(query)
        if self.dialect == "sqlite":
            return id_column.in_(ids)
        return id_column == sa.func.any(sa.func.array(ids.scalar_subquery()))


def _sqlite_time(value: dt.datetime | str | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME text form, so that string comparison orders correctly."""
    if value is None or isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
