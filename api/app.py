"""The Litestar application factory: the one place that wires routes, auth, errors and OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope
from sqlalchemy import Engine

from api.audit import AuditController
from api.auth import ApiKeyAuthentication
from api.context import ApiContext
from api.feeds import FeedsController
from api.health import health, ready
from api.keys import KeysController
from api.openapi_answers import document_answers
from api.problems import http_exception_handler, unexpected_exception_handler
from api.request_limits import refuse_malformed_requests
from ptl.settings import Settings

API_PREFIX = "/api/v1"
#: Uploaded extracts: a 100k-row WLMDS CSV is ~30 MB; leave room for the biggest trusts.
MAX_REQUEST_BYTES = 512 * 1024 * 1024

_DESCRIPTION = """\
The system-wide shared PTL: one waiting list across every provider, and the views that turn it
into decisions. Send your key as `Authorization: Bearer ptl_…`. Every view also answers as CSV
(`?format=csv` or `Accept: text/csv`). Errors are RFC 9457 problem details.
"""


def _view_controllers() -> list[type]:
    from api.data_quality import DataQualityController
    from api.equalisation import EqualisationController
    from api.equity import EquityController
    from api.persons import PersonsController
    from api.queue import QueueController
    from api.sites import SitesController
    from api.validation import ValidationController

    return [QueueController, SitesController, EqualisationController, EquityController,
            ValidationController, DataQualityController, PersonsController]


def _mutual_aid_controllers() -> list[type]:
    from api.capacity import CapacityController
    from api.matching import MatchingController
    from api.offers import OffersController
    from api.transfers import TransfersController

    return [CapacityController, OffersController, MatchingController, TransfersController]


def create_app(settings: Settings, engine: Engine | None = None) -> Litestar:
    """The API over the store at `settings.database_url` (or the given engine)."""
    if engine is None:
        from ptl.store.engine import make_engine

        engine = make_engine(settings.database_url)
    context = ApiContext.build(settings, engine)
    api = Router(
        path=API_PREFIX,
        route_handlers=[*_view_controllers(), FeedsController, KeysController, AuditController,
                        *_mutual_aid_controllers()],
        security=[{"apiKey": []}],
    )
    app = Litestar(
        route_handlers=[health, ready, api],
        middleware=[DefineMiddleware(ApiKeyAuthentication, exclude=["^/schema", "^/health$", "^/ready$"])],
        exception_handlers={HTTPException: http_exception_handler, Exception: unexpected_exception_handler},
        openapi_config=OpenAPIConfig(
            title="Shared PTL API", version="1.0.0", description=_DESCRIPTION, path="/schema",
            render_plugins=[SwaggerRenderPlugin(), JsonRenderPlugin()], create_examples=True,
            components=Components(security_schemes={"apiKey": SecurityScheme(
                type="http", scheme="bearer", description="an API key from `ptl keys create`")}),
        ),
        state=_state(context),
        on_shutdown=[context.close],
        request_max_body_size=MAX_REQUEST_BYTES,
        before_request=refuse_malformed_requests,
        debug=False,
        # Logging is ptl.logs' (JSON off a terminal, no patient values); Litestar's own
        # configuration would replace it with its plain format.
        logging_config=None,
    )
    app.before_send.append(_options_allow_every_method(app))
    document_answers(app.openapi_schema)
    return app


def _options_allow_every_method(app: Litestar) -> Callable[[Message, Scope], Awaitable[None]]:
    """A hook giving Litestar's own OPTIONS answer the `Allow` of the route that serves the path.

    Litestar makes that answer when it first meets a path and keeps it when more handlers join
    the path later (a controller's GET and POST on `/`), so it would list only some of the
    methods: `/api/v1/feeds` answered `GET, OPTIONS` though it takes POST."""
    allow = {
        id(route.route_handler_map["OPTIONS"][0]): ", ".join(sorted(route.methods)).encode("ascii")
        for route in app.routes if isinstance(route, HTTPRoute)
    }

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        methods = allow.get(id(scope.get("route_handler")))
        if methods is not None:
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", methods)]

    return before_send


def _state(context: ApiContext) -> State:
    return State({"api": context})
