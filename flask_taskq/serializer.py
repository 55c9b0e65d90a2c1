"""Serializers turning message bodies and results into bytes and back."""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import pickle
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast


class Serializer(Protocol):
    """Encodes Python values to bytes and back."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    """Compact JSON (the default): strings, numbers, lists, dicts, booleans and None."""

    name = "json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        self._decoder = json.JSONDecoder()
        self._scan = json.scanner.make_scanner(cast(Any, self._decoder))
        # One C encoder per thread (its memo of the containers being encoded, which finds
        # circular references, is its own): ``JSONEncoder.encode`` makes one per call.
        self._local = threading.local()

    def dumps(self, value: Any) -> bytes:
        try:
            encode = self._local.encode
        except AttributeError:
            encode = self._local.encode = self._c_encoder()
        if encode is None:
            return self._encoder.encode(value).encode()
        try:
            return "".join(encode(value, 0)).encode()
        except BaseException:
            self._local.encode = self._c_encoder()  # a fresh memo after a failure
            raise

    def _c_encoder(self) -> Callable[[Any, int], Sequence[str]] | None:
        make = getattr(json.encoder, "c_make_encoder", None)  # untyped in typeshed
        if make is None:  # no C accelerator: JSONEncoder.encode
            return None
        e = self._encoder
        encoder: Callable[[Any, int], Sequence[str]] = make(
            {},
            e.default,
            getattr(json.encoder, "c_encode_basestring"),  # noqa: B009 - untyped
            None,
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
        )
        return encoder

    def loads(self, data: bytes | str) -> Any:
        text = data.decode() if isinstance(data, bytes) else data
        try:  # the scanner alone: what ``decode`` adds is whitespace around the value
            value, end = self._scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):  # whitespace, extra data or an error: decode says which
            return self._decoder.decode(text)
        return value


class OrjsonSerializer:
    """JSON through orjson (``pip install flask-taskq[orjson]``): the same bytes as
    ``"json"`` for ordinary data, several times faster to encode and decode.

    Where orjson differs from the standard library it says so instead of guessing: an
    integer beyond 64 bits, a dict key that is not a string, or a ``datetime`` raises
    ``TypeError``; NaN and infinities become ``null``; ``uuid.UUID`` and enum members are
    written as their string / value. Messages in plain JSON (from ``"json"`` producers)
    decode the same way, except integers beyond 64 bits, which orjson reads as floats.
    """

    name = "orjson"

    def __init__(self) -> None:
        import orjson

        self._dumps = orjson.dumps
        self._loads = orjson.loads
        self._option = (
            orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_PASSTHROUGH_SUBCLASS
        )

    def dumps(self, value: Any) -> bytes:
        return self._dumps(value, default=_unencodable, option=self._option)

    def loads(self, data: bytes) -> Any:
        return self._loads(data)


def _unencodable(value: Any) -> Any:
    # subclasses of the plain types (an IntEnum, a str subclass) encode as their base
    plain: tuple[type[Any], ...] = (str, int, float, list, dict)
    for base in plain:
        if isinstance(value, base):
            return base(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class MsgpackSerializer:
    """msgpack (``pip install flask-taskq[msgpack]``): smaller and faster than JSON."""

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def dumps(self, value: Any) -> bytes:
        packed: bytes = self._packb(value, use_bin_type=True)
        return packed

    def loads(self, data: bytes) -> Any:
        return self._unpackb(data, raw=False)


class PickleSerializer:
    """pickle: any Python object, but a message can run code when loaded. Opt-in only."""

    name = "pickle"

    def __init__(self) -> None:
        warnings.warn(
            "TASKQ_SERIALIZER='pickle': anyone who can write to Redis can run code in "
            "your workers. Use it only on a trusted, private Redis.",
            stacklevel=3,
        )

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


SERIALIZERS: dict[str, type[Serializer]] = {
    "json": JSONSerializer,
    "orjson": OrjsonSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}


def get_serializer(name: str) -> Serializer:
    """Return the serializer called ``name`` or raise ``ValueError``."""
    try:
        return SERIALIZERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown TASKQ_SERIALIZER {name!r}; choose one of {', '.join(SERIALIZERS)}"
        ) from None
