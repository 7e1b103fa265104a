"""The service's API document: the input rules Python types cannot say (added to FastAPI's OpenAPI document, so
schemathesis and clients see them), and /docs served from the installed Swagger UI files instead of a CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from course.settings import Settings

#: Bounds of a document's metadata through the API (course.text.check_json): levels, entries per object or array,
#: characters per string, and 16 KB encoded in all.
METADATA_LIMITS = {"max_depth": 8, "max_items": 32, "max_string": 2000}

#: Bounds of the `filter` query parameter (a flat JSON object): keys, and characters per key or string value.
FILTER_MAX_KEYS = 8
FILTER_MAX_CHARS = 64


def document_input_rules(app: FastAPI, settings: Settings) -> None:
    """Extend FastAPI's document with the rules the handlers enforce that Python types cannot say: text without NUL
    and with a non-space character, metadata as storable JSON, and `filter` as JSON in a query parameter."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = default_openapi()
            no_nul = {"pattern": "^[^\\u0000]*$"}
            # some character that is not whitespace as Python's str.strip() sees it (the handlers' test)
            spaces = (
                "\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680"
                "\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
            )
            text_rule = {**no_nul, "not": {"pattern": f"^[{spaces}]*$"}}
            storable = {"type": "string", **no_nul}
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            # metadata as JSON Schema can say it: jsonb-storable values, nesting unrolled level by level down to
            # METADATA_LIMITS["max_depth"], entries and string lengths bounded (the byte limit is in the description)
            scalar = [
                {**storable, "maxLength": METADATA_LIMITS["max_string"]},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
            # the deepest level: only empty containers
            schemas["JsonLevel1"] = {
                "anyOf": scalar + [{"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]
            }
            for level in range(2, METADATA_LIMITS["max_depth"]):
                inner = {"$ref": f"#/components/schemas/JsonLevel{level - 1}"}
                schemas[f"JsonLevel{level}"] = {
                    "anyOf": scalar
                    + [
                        {"type": "array", "maxItems": METADATA_LIMITS["max_items"], "items": inner},
                        {
                            "type": "object",
                            "maxProperties": METADATA_LIMITS["max_items"],
                            "propertyNames": no_nul,
                            "additionalProperties": inner,
                        },
                    ]
                }
            schemas["SearchRequest"]["properties"]["query"].update(text_rule, maxLength=settings.search_max_query_chars)
            schemas["DocumentIn"]["properties"]["content"].update(text_rule)
            schemas["DocumentIn"]["properties"]["metadata"].update(
                {
                    "maxProperties": METADATA_LIMITS["max_items"],
                    "propertyNames": no_nul,
                    "additionalProperties": {
                        "$ref": f"#/components/schemas/JsonLevel{METADATA_LIMITS['max_depth'] - 1}"
                    },
                }
            )
            for parameter in document["paths"]["/search"]["post"]["parameters"]:
                if parameter["name"] == "filter":
                    parameter.pop("schema", None)
                    parameter["content"] = {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "maxProperties": FILTER_MAX_KEYS,
                                "propertyNames": {"minLength": 1, "maxLength": FILTER_MAX_CHARS, **no_nul},
                                "additionalProperties": {
                                    "anyOf": [
                                        {**storable, "maxLength": FILTER_MAX_CHARS},
                                        {"type": "number"},
                                        {"type": "boolean"},
                                    ]
                                },
                            }
                        }
                    }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def offline_docs(app: FastAPI) -> None:
    """/docs without a CDN: Swagger UI's files come from the installed fastapi-offline package."""
    import fastapi_offline

    app.mount(
        "/docs-assets", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )
