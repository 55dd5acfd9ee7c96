"""/docs: the OpenAPI description as a page of our own. Swagger UI would load scripts from
a CDN, which the pages' content security policy (rightly) refuses and an offline install
cannot reach; this page renders the same schema server-side, with no script at all, and
links the machine-readable /openapi.json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter

from csautomation.api.intake import SignalBatch

METHODS = ("get", "post", "put", "patch", "delete")


def install_schema(app: FastAPI) -> None:
    """Add the schemas the signal route documents by reference (it reads its raw body, so
    that bad items can be quarantined, and FastAPI cannot see them)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        batch = TypeAdapter(SignalBatch).json_schema(ref_template="#/components/schemas/{model}")
        found = batch.pop("$defs", {})
        found["SignalBatch"] = batch
        schema.setdefault("components", {}).setdefault("schemas", {}).update(found)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            out.append(
                {
                    "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                    "method": method.upper(),
                    "path": path,
                    "tags": op.get("tags", []),
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": [
                        {
                            "name": p.get("name", ""),
                            "where": p.get("in", ""),
                            "required": p.get("required", False),
                            "type": _type(p.get("schema", {})),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _type(body.get("schema", {})) if body else "",
                    "responses": [
                        (code, r.get("description", "")) for code, r in op["responses"].items()
                    ],
                }
            )
    return out


def models(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, model in sorted(schema.get("components", {}).get("schemas", {}).items()):
        required = set(model.get("required", []))
        out.append(
            {
                "name": name,
                "description": model.get("description", ""),
                "enum": model.get("enum", []),
                "fields": [
                    {
                        "name": field,
                        "type": _type(spec),
                        "required": field in required,
                        "description": spec.get("description", ""),
                    }
                    for field, spec in model.get("properties", {}).items()
                ],
            }
        )
    return out


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    for union in ("oneOf", "anyOf"):
        if union in spec:
            return " | ".join(_type(s) for s in spec[union])
    kind = spec.get("type", "")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    fmt = spec.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind or "any")


def router(app: FastAPI, templates: Jinja2Templates) -> APIRouter:
    install_schema(app)
    pages = APIRouter(include_in_schema=False)

    @pages.get("/docs", response_class=HTMLResponse)
    def docs_page(request: Request) -> Response:
        schema = app.openapi()
        context = {
            "person": None,
            "flashes": [],
            "csrf": "",
            "title": schema["info"]["title"],
            "operations": operations(schema),
            "models": models(schema),
        }
        return templates.TemplateResponse(request, "docs.html", context)

    return pages
