"""Notebooks on unfinished labs: a cell that stops at a step still to write, or fails because of one, says which
step to finish in a few lines instead of a long traceback; other errors keep their traceback."""

from __future__ import annotations

import sys

import asyncpg

from course.notebook import explain


def traceback_of(exc: BaseException):
    try:
        raise exc
    except BaseException:  # noqa: BLE001
        return sys.exc_info()[2]


def test_each_kind_of_error_names_the_step():
    todo = explain(NotImplementedError, NotImplementedError("TODO: read extversion"), None)
    assert "yours to write" in todo and "TODO: read extversion" in todo
    table = asyncpg.exceptions.UndefinedTableError('relation "embeddings" does not exist')
    assert "create_embeddings_table()" in explain(type(table), table, None)
    vector = asyncpg.exceptions.UndefinedObjectError('type "vector" does not exist')
    assert "enable_extension()" in explain(type(vector), vector, None)
    assert "did not finish" in explain(NameError, NameError("name 'df' is not defined"), None)
    assert explain(ZeroDivisionError, ZeroDivisionError("division by zero"), None) is None, "other errors: traceback"


# Every notebook run on the untouched starter: tests/test_starter.py.
