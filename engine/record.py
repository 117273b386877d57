"""A small stand-in for the parts of dataclasses the engine uses.

Why: `import dataclasses` pulls in inspect, ast, tokenize and dis, about 7 ms, and every `labtui`
command and container start pays for the engine's imports before it does anything. The engine's
records are plain: named fields, defaults, default factories, frozen or not, asdict, fields and
replace. That is all this module does; it is not a general dataclasses replacement.
"""

from __future__ import annotations

_MISSING = object()


class Field:
    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: object = _MISSING, default_factory: object = _MISSING) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory


class FrozenInstanceError(AttributeError):
    pass


def field(*, default: object = _MISSING, default_factory: object = _MISSING, **_ignored: object) -> Field:
    return Field(default, default_factory)


def dataclass(cls: type | None = None, *, frozen: bool = False, **_ignored: object):
    def wrap(klass: type) -> type:
        return _process(klass, frozen)

    return wrap if cls is None else wrap(cls)


def _process(cls: type, frozen: bool) -> type:
    specs: dict[str, Field] = {}
    for klass in reversed(cls.__mro__):
        for name, ann in klass.__dict__.get("__annotations__", {}).items():
            if "ClassVar" in str(ann):
                continue
            value = klass.__dict__.get(name, _MISSING)
            f = value if isinstance(value, Field) else Field(default=value)
            f.name = name
            specs[name] = f
    names = tuple(specs)
    for name, f in specs.items():  # the class attribute holds the plain default, as dataclasses does
        if isinstance(cls.__dict__.get(name), Field):
            if f.default is not _MISSING:
                setattr(cls, name, f.default)
            else:
                delattr(cls, name)

    def __init__(self, *args: object, **kwargs: object) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, {len(args)} given")
        for i, name in enumerate(names):
            if i < len(args):
                value = args[i]
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            elif name in kwargs:
                value = kwargs.pop(name)
            else:
                f = specs[name]
                if f.default_factory is not _MISSING:
                    value = f.default_factory()  # type: ignore[operator]
                elif f.default is not _MISSING:
                    value = f.default
                else:
                    raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kwargs)}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{cls.__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    cls.__init__ = __init__
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    cls.__record_fields__ = tuple(specs.values())
    if frozen:
        def __setattr__(self, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        def __hash__(self) -> int:
            return hash(tuple(getattr(self, n) for n in names))

        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
        cls.__hash__ = __hash__
    else:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses with eq=True
    return cls


def fields(obj: object) -> tuple[Field, ...]:
    return obj.__record_fields__  # type: ignore[attr-defined]


def is_record(obj: object) -> bool:
    return hasattr(type(obj), "__record_fields__")


def asdict(obj: object) -> dict:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def _plain(value: object) -> object:
    if is_record(value):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def replace(obj: object, **changes: object) -> object:
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    values.update(changes)
    return type(obj)(**values)
