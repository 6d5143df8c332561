"""Reading a ``tokenizer.json`` object field by field, so that nothing in it goes unread.

    Fields(obj, file, where).take(key, types, default)   a field's value, type-checked
    Fields(...).done()                                   every key was taken, or a refusal

A key that no ``take`` asked for is refused, naming it: a field the reader does not know
could change the map, and silently dropping it would make ``encode`` differ from the
``tokenizers`` library without a word. Every error is one ``ValueError`` line:
``<file>: <where>.<field> = <value>: <why>; <fix>``.
"""

from __future__ import annotations

from typing import Any

REQUIRED = object()  # a ``take`` default: the field must be present
_FIX = "convert the tokenizer to a supported form, or encode with the `tokenizers` library"


def refuse(file: str, where: str, value: Any, why: str) -> ValueError:
    """The one-line error for a field ``where`` holding ``value`` that cannot be honoured."""
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ValueError(f"{file}: {where} = {shown}: {why}; {_FIX}")


class Fields:
    """The keys of one JSON object, taken one by one (see the module docstring)."""

    def __init__(self, obj: Any, file: str, where: str):
        if not isinstance(obj, dict):
            raise refuse(file, where, obj, "expected a JSON object")
        self.obj, self.file, self.where = obj, file, where
        self._taken: set[str] = set()

    def take(self, key: str, types: type | tuple[type, ...], default: Any = REQUIRED) -> Any:
        """``obj[key]`` if it has one of ``types`` (``None`` allowed only if listed)."""
        self._taken.add(key)
        if key not in self.obj:
            if default is REQUIRED:
                raise refuse(self.file, self.sub(key), None, "the field is missing")
            return default
        value = self.obj[key]
        bad_bool = isinstance(value, bool) and bool not in _as_tuple(types)
        if not isinstance(value, types) or bad_bool:
            names = " or ".join(t.__name__ for t in _as_tuple(types))
            raise refuse(self.file, self.sub(key), value, f"expected {names}")
        return value

    def must_be(self, key: str, allowed: tuple, why: str, default: Any = REQUIRED) -> Any:
        """``obj[key]``, which must be one of ``allowed`` (else refused with ``why``)."""
        self._taken.add(key)
        value = self.obj.get(key, default)
        if value is REQUIRED:
            raise refuse(self.file, self.sub(key), None, "the field is missing")
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise refuse(self.file, self.sub(key), value, why)
        return value

    def ignore(self, *keys: str) -> None:
        """Keys read and deliberately unused (they do not change ids or text, e.g. offsets)."""
        self._taken.update(keys)

    def sub(self, key: str) -> str:
        """The path of field ``key``, as the errors name it (``model.dropout``)."""
        return f"{self.where}.{key}" if self.where else key

    def done(self) -> None:
        if unknown := sorted(set(self.obj) - self._taken):
            key = unknown[0]
            raise refuse(
                self.file, self.sub(key), self.obj[key], "jaxformer does not know this field"
            )


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)
