"""The ``python`` tool kind: a trusted in-process callable."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from agentrt import _json
from agentrt._imports import import_callable
from agentrt.errors import ToolError, UsageError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext, ToolResult

__all__ = ["PythonTool", "schema_from_signature"]


def _context_param(fn: Callable[..., Any]) -> str | None:
    """Name of the parameter that receives the ToolContext, if the function takes one."""
    hints = _hints(fn)
    for name in inspect.signature(fn).parameters:
        if hints.get(name) is ToolContext or name == "ctx":
            return name
    return None


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to no hints
        return {}


def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    hints = _hints(fn)
    skip = _context_param(fn)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name == skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    """JSON Schema of a function's arguments, as offered to the model."""
    schema = _arguments_model(fn).model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _json.dumps_str(value)


class PythonTool:
    """A Tool of kind ``python``: calls ``module:function`` in this process.

    Synchronous functions run in a worker thread so they never block the loop.
    The function may take a ``ctx: ToolContext`` parameter to learn its
    idempotency key.
    """

    dynamic = False

    def __init__(self, name: str, spec: ToolSpec, fn: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.spec = spec
        if fn is None:
            if not spec.callable:
                raise UsageError(f"Tool {name}: kind 'python' needs `callable`")
            fn = import_callable(spec.callable, what=f"Tool {name}")
        self._fn = fn
        self._ctx_param = _context_param(self._fn)
        self._args_model = _arguments_model(self._fn)
        self._lookup = (
            import_callable(spec.lookup, what=f"Tool {name} lookup") if spec.lookup else None
        )
        doc = inspect.getdoc(self._fn) or ""
        schema = spec.input_schema or schema_from_signature(self._fn)
        self._definition = ToolDef(name, spec.description or doc.split("\n\n")[0] or name, schema)

    @property
    def definition(self) -> ToolDef:
        """How the tool is offered to the model."""
        return self._definition

    async def definitions(self) -> list[ToolDef]:
        """The one tool this function is."""
        return [self._definition]

    async def close(self) -> None:
        """Nothing to release."""

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate the arguments against the signature and call the function."""
        try:
            kwargs = dict(self._args_model.model_validate(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        if self._ctx_param:
            kwargs[self._ctx_param] = ctx
        return ToolResult(_render(await self._invoke(self._fn, kwargs)))

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """Ask the tool's ``lookup`` function whether the call with this key happened."""
        if self._lookup is None:
            return None
        found = await self._invoke(self._lookup, {"ctx": ctx})
        return None if found is None else ToolResult(_render(found))

    @staticmethod
    async def _invoke(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(**kwargs)
        result = await asyncio.to_thread(fn, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result
