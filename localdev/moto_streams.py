"""Make moto's DynamoDB stream cheap to copy (the embedded DynamoDB, and moto in tests).

moto's TransactWriteItems deep-copies each table it touches, to restore it if the transaction
fails, and a table with a stream holds every stream record ever written: each transaction then
costs time in proportion to the stream's length (600 transactions: 25 s without a stream, 176 s
with one). Stream records are never changed once written, so the copy only needs the list of
them: a shallow copy of the list keeps the rollback exact (a failed transaction's records go
with it) at the cost of a list of pointers.
"""

from __future__ import annotations

import copy

_installed = False


def install() -> None:
    """Patch moto's StreamShard.__deepcopy__ (once; a no-op where moto is not installed)."""
    global _installed
    if _installed:
        return
    try:
        from moto.dynamodb.models.table import StreamShard
    except ImportError:  # an external DynamoDB (DynamoDB Local): nothing to patch
        return

    def __deepcopy__(self, memo):
        new = StreamShard.__new__(StreamShard)
        memo[id(self)] = new
        new.__dict__.update(self.__dict__)
        new.table = copy.deepcopy(self.table, memo)  # type: ignore[attr-defined]  # the table copy being made (from memo)
        new.items = list(self.items)  # type: ignore[attr-defined]  # records are immutable: share them, copy the list
        return new

    StreamShard.__deepcopy__ = __deepcopy__  # type: ignore[attr-defined]
    _installed = True
