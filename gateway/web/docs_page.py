"""``/docs``: the OpenAPI document flattened into what a reader looks for (operations by tag,
their fields, answers and problem codes, the schemas), rendered on the server."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

__all__ = ["METHODS", "follow", "page", "problem_codes", "resolve", "text"]

METHODS = ("get", "put", "post", "patch", "delete")  # the operations a path item may hold

Label = list[tuple[str, str | None]]  # a type as pieces of text, each maybe linking a schema


@dataclass
class _Field:
    name: str
    label: Label
    required: bool
    constraints: str
    description: str


@dataclass
class _Response:
    status: str
    description: str
    media: list[tuple[str, Label]]
    codes: list[str]
    headers: list[_Field]
    event_data: Label | None


@dataclass
class _Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    security: list[str]
    parameters: list[_Field]
    request_media: list[str] = field(default_factory=list)
    request_label: Label | None = None
    request_fields: list[_Field] = field(default_factory=list)
    responses: list[_Response] = field(default_factory=list)


@dataclass
class _Schema:
    name: str
    description: str
    label: Label | None  # None for a plain object: its fields say it all
    constraints: str
    fields: list[_Field]


@dataclass
class _Tag:
    name: str
    anchor: str
    description: str
    operations: list[_Operation]


@dataclass
class _Page:
    title: str
    version: str
    summary: str
    description: str
    tags: list[_Tag]
    security: list[tuple[str, str]]  # the schemes' names and descriptions
    schemas: list[_Schema]


def page(doc: dict[str, Any]) -> _Page:
    operations: dict[str, list[_Operation]] = {}
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                tag = item[method]["tags"][0]
                operations.setdefault(tag, []).append(_operation(doc, path, method, item))
    tags = [_Tag(tag["name"], "tag-" + _slug(tag["name"]), tag.get("description", ""),
                 operations.get(tag["name"], [])) for tag in doc["tags"]]
    schemas = [_schema(doc, name, schema)
               for name, schema in doc["components"]["schemas"].items()]
    security = [(name, scheme.get("description", ""))
                for name, scheme in doc["components"]["securitySchemes"].items()]
    info = doc["info"]
    return _Page(info["title"], info["version"], info.get("summary", ""),
                 info.get("description", ""), tags, security, schemas)


def _operation(doc: dict[str, Any], path: str, method: str,
               item: dict[str, Any]) -> _Operation:
    op = item[method]
    parameters = [resolve(doc, p) for p in item.get("parameters", []) + op.get("parameters", [])]
    result = _Operation(
        method=method.upper(), path=path, anchor="op-" + op["operationId"],
        summary=op.get("summary", ""), description=op.get("description", ""),
        security=[name for requirement in op.get("security", []) for name in requirement],
        parameters=[_Field(f"{p['name']} ({p['in']})", _label(p["schema"]),
                           p.get("required", False), _constraints(p["schema"]),
                           p.get("description", "")) for p in parameters],
    )
    if "requestBody" in op:
        content = resolve(doc, op["requestBody"])["content"]
        result.request_media = list(content)
        schema = next(iter(content.values()))["schema"]
        result.request_label = _label(schema)
        result.request_fields = _fields(doc, schema)
    for status in sorted(op["responses"]):
        response = resolve(doc, op["responses"][status])
        content = response.get("content", {})
        headers = {name: resolve(doc, h) for name, h in response.get("headers", {}).items()}
        event_data = next((m["x-event-data"] for m in content.values() if "x-event-data" in m),
                          None)
        result.responses.append(_Response(
            status=status, description=response.get("description", ""),
            media=[(media, _label(m.get("schema", {}))) for media, m in content.items()],
            codes=sorted({code for m in content.values()
                          for code in problem_codes(doc, m.get("schema", {}))}),
            headers=[_Field(name, _label(h.get("schema", {})), h.get("required", False), "",
                            h.get("description", "")) for name, h in headers.items()],
            event_data=_label(event_data) if event_data else None,
        ))
    return result


def _schema(doc: dict[str, Any], name: str, schema: dict[str, Any]) -> _Schema:
    fields = _fields(doc, schema)
    plain_object = schema.get("type") == "object" and "oneOf" not in schema
    return _Schema(name, schema.get("description", ""),
                   None if plain_object and fields else _label(schema),
                   _constraints(schema), fields)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def follow(doc: dict[str, Any], pointer: str) -> Any:
    """The part of the document a JSON pointer (``/components/schemas/Order``) names."""
    node: Any = doc
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` within the document until a node without one."""
    while "$ref" in node:
        node = follow(doc, node["$ref"].removeprefix("#"))
    return node


def _ref_name(schema: dict[str, Any]) -> str:
    return schema["$ref"].rsplit("/", 1)[1]


def _is_narrowing(schema: dict[str, Any]) -> bool:
    """An ``allOf`` part that only tightens another (``code``'s enum, a minimum)."""
    return not {"$ref", "type", "oneOf", "anyOf", "allOf"} & set(schema)


def _label(schema: dict[str, Any]) -> Label:
    if "$ref" in schema:
        name = _ref_name(schema)
        return [(name, f"#schema-{name}")]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return _joined([_label(part) for part in schema[key]], " or ")
    if "allOf" in schema:
        parts = [part for part in schema["allOf"] if not _is_narrowing(part)]
        if parts:
            return _joined([_label(part) for part in parts], " and ")
    if "const" in schema:
        return [(json.dumps(schema["const"], ensure_ascii=False), None)]
    types = schema.get("type")
    if types is None:
        return [("any", None)]
    if isinstance(types, list):
        return _joined([_label({**schema, "type": t}) for t in types], " or ")
    if types == "array":
        return [("array of ", None), *_label(schema.get("items", {}))]
    if types == "object" and isinstance(schema.get("additionalProperties"), dict):
        return [("map of name to ", None), *_label(schema["additionalProperties"])]
    if "format" in schema and types == "string":
        return [(f"string ({schema['format']})", None)]
    return [(types, None)]


def _joined(labels: list[Label], word: str) -> Label:
    joined: Label = []
    for n, label in enumerate(labels):
        joined += ([(word, None)] if n else []) + label
    return joined


def _constraints(schema: dict[str, Any]) -> str:
    """Enums, bounds, patterns and defaults in a few words."""
    said: list[str] = []
    parts = [schema] + [p for p in schema.get("allOf", []) if _is_narrowing(p)]
    for part in parts:
        if "enum" in part:
            said.append("one of " + ", ".join(json.dumps(v, ensure_ascii=False)
                                              for v in part["enum"]))
        for key, sign in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"),
                          ("maxLength", "length ≤"), ("minItems", "items ≥"),
                          ("maxItems", "items ≤")):
            if key in part:
                said.append(f"{sign} {part[key]}")
        if "pattern" in part:
            said.append(f"pattern {part['pattern']}")
        if "default" in part:
            said.append(f"default {json.dumps(part['default'], ensure_ascii=False)}")
    return "; ".join(said)


def _fields(doc: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[_Field]:
    """The properties of an object schema (through ``$ref`` and ``allOf``), nested inline
    objects as ``outer.inner`` and ``list[].inner``."""
    schema = resolve(doc, schema)
    properties: dict[str, Any] = {}
    required: set[str] = set()
    for part in [schema] + [resolve(doc, p) for p in schema.get("allOf", [])]:
        for name, prop in part.get("properties", {}).items():
            properties.setdefault(name, prop)
        required |= set(part.get("required", []))
    fields: list[_Field] = []
    for name, prop in properties.items():
        fields.append(_Field(prefix + name, _label(prop), name in required,
                             _constraints(prop), prop.get("description", "")))
        if prop.get("type") == "object" and "properties" in prop:
            fields += _fields(doc, prop, f"{prefix}{name}.")
        items = prop.get("items", {})
        if prop.get("type") == "array" and "properties" in items:
            fields += _fields(doc, items, f"{prefix}{name}[].")
    return fields


def problem_codes(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The ``code`` enum of a problem schema: the narrowest one given (an operation's own, else
    its status's)."""
    schema = resolve(doc, schema)
    for part in reversed(schema.get("allOf", [])):
        codes = part.get("properties", {}).get("code", {}).get("enum") or (
            problem_codes(doc, part) if "$ref" in part else None)
        if codes:
            return list(codes)
    return list(schema.get("properties", {}).get("code", {}).get("enum", []))


def text(text: str) -> Markup:
    """The document's descriptions as HTML: paragraphs, ``- `` lists and `code` spans."""

    def inline(line: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(line)))

    html: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        items: list[str] = []
        prose: list[str] = []
        for line in lines:
            if line.startswith("- "):
                items.append(line[2:])
            elif items:
                items[-1] += " " + line  # a list item that goes on
            else:
                prose.append(line)
        if prose:
            html.append(f"<p>{inline(' '.join(prose))}</p>")
        if items:
            html.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
    return Markup("\n".join(html))
