"""The v1 data API: `GET /api/v1/<path>` (paged) and `GET /api/v1/<path>/<id>`.

Two profiles (config.PROFILES). "extended" validates like Rose Rocket's NestJS stack (a 400
carries every problem at once as a list of messages) and serves `updated_*` filters in
`updated_at` order. "documented" is the 2018 v1 description: limit 20 by default and at most 50
(larger limits clamped, or rejected if configured), `updated_*` ignored like any unknown
parameter, `created_*` on orders only, newest-created first; its error envelope is applied in
app.py. Pages are assembled from the records' stored JSON bytes, never re-encoded.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from worker.simulator.config import PATHS, SINGULAR, SimulatorConfig
from worker.simulator.data import Dataset, Page, Window
from worker.simulator.messages import (
    Request,
    Response,
    api_error,
    bearer_token,
    parse_params,
    unauthorized,
)
from worker.simulator.oauth import AuthorizationServer

PREFIX = "/api/v1/"
MAX_OFFSET = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BY_PATH = {path: resource for resource, path in PATHS.items()}
# The only resource the v1 description gives date filters (created_*): orders.
CREATED_FILTERS = frozenset({"orders"})
# What `schema_drift_after` adds to every record served (SimulatorConfig).
DRIFT_FIELD = "drift_added_field"


def drifted(blob: bytes) -> bytes:
    """A record as the API serves it once `schema_drift_after` applies: a field added, and
    ``full_id`` (a text column in rosesync's registry) turned from a string into an object."""
    record = msgspec.json.decode(blob)
    record[DRIFT_FIELD] = "added by the simulator's schema_drift_after"
    if "full_id" in record:
        record["full_id"] = {"value": record["full_id"]}
    return msgspec.json.encode(record)


def template_of(route: tuple[str, str | None]) -> str:
    resource, record_id = route
    path = f"{PREFIX}{PATHS[resource]}"
    return path if record_id is None else path + "/{id}"


def parse_timestamp(text: str) -> int | None:
    """ISO-8601 to epoch milliseconds, rounded UP; None if unparseable.

    Rounding up is exact for both filters because stored stamps are whole milliseconds:
    t >= s  <=>  t >= ceil(s), and t < e  <=>  t < ceil(e). A naive time is taken as UTC.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)  # ceiling division, exact on integers


class DataApi:
    def __init__(
        self,
        config: SimulatorConfig,
        dataset_of: Callable[[str | None], Dataset],
        oauth: AuthorizationServer,
        after_read: Callable[[], None],
    ) -> None:
        self.config = config
        self._dataset_of = dataset_of
        self._oauth = oauth
        self._after_read = after_read
        self._answered = itertools.count()  # data requests since schema_drift_after was set

    def count_drift_from_now(self) -> None:
        """`schema_drift_after` was set: it counts requests from now on."""
        self._answered = itertools.count()

    def route_of(self, path: str) -> tuple[str, str | None] | None:
        """(resource, record id or None) for an API path, None if there is no such route."""
        if not path.startswith(PREFIX):
            return None
        parts = path[len(PREFIX) :].split("/")
        resource = _BY_PATH.get(parts[0])
        if resource is None or not self.config.serves(resource) or len(parts) > 2:
            return None
        if len(parts) == 2 and (not parts[1] or not self.config.by_id):
            return None
        return resource, parts[1] if len(parts) == 2 else None

    def handle(self, request: Request, route: tuple[str, str | None]) -> Response:
        token = bearer_token(request)
        access = None if token is None else self._oauth.check_access(token)
        if access is None:
            return unauthorized(request)
        dataset = self._dataset_of(access.org_id)  # each org sees only its own records
        resource, record_id = route
        after = self.config.schema_drift_after
        drift = next(self._answered) >= after if after is not None else False
        response = (
            self._list(request, dataset, resource, drift)
            if record_id is None
            else self._get(dataset, resource, record_id, drift)
        )
        if response.status == 200:
            self._after_read()
        return response

    @staticmethod
    def _get(dataset: Dataset, resource: str, record_id: str, drift: bool) -> Response:
        # Unknown, deleted and malformed ids are all simply "not found".
        blob = dataset.get(resource, record_id)
        if blob is None:
            return api_error(404, f"{SINGULAR[resource]} {record_id} not found")
        if drift:
            blob = drifted(blob)
        return Response(200, b'{"' + SINGULAR[resource].encode() + b'":' + blob + b"}")

    def _list(self, request: Request, dataset: Dataset, resource: str, drift: bool) -> Response:
        try:
            params, repeated = parse_params(request.query)
        except ValueError:
            return api_error(400, ["query string is not valid"])
        # Unknown parameters are ignored, as real APIs do; repeated ones are ambiguous.
        problems = [f"{name} must not be repeated" for name in sorted(repeated)]
        config = self.config
        default, maximum = config.page_limits
        ceiling = maximum if config.rejects_oversize_limit else MAX_OFFSET
        limit = min(_integer(params, "limit", default, 1, ceiling, problems), maximum)
        offset = _integer(params, "offset", 0, 0, MAX_OFFSET, problems)
        window = Window()
        if not config.documented:
            window = Window(
                updated_start=_timestamp(params, "updated_start_at", problems),
                updated_end=_timestamp(params, "updated_end_at", problems),
                end_inclusive=config.end_inclusive,
            )
        if resource in CREATED_FILTERS:
            created_start = _timestamp(params, "created_start_at", problems)
            created_end = _timestamp(params, "created_end_at", problems)
            window = Window(
                window.updated_start,
                window.updated_end,
                window.end_inclusive,
                created_start,
                created_end,
            )
        if problems:
            return api_error(400, problems)
        page: Page = (
            dataset.page_by_created(resource, offset, limit, window)
            if config.documented
            else dataset.page_by_updated(resource, offset, limit, window)
        )
        items: Sequence[bytes] = page.items
        if drift:
            items = [drifted(blob) for blob in items]
        key = PATHS[resource]
        tail = f'],"offset":{offset},"limit":{limit}'
        if config.include_total:
            tail += f',"total":{page.total}'
        body = b"".join((b'{"', key.encode(), b'":[', b",".join(items), tail.encode(), b"}"))
        return Response(200, body)


def _integer(
    params: dict[str, str], name: str, default: int, low: int, high: int, problems: list[str]
) -> int:
    text = params.get(name)
    if text is None:
        return default
    # A regex, not int(): int() would also take "+5", " 5", "5_0" and other scripts' digits.
    if not _INTEGER.fullmatch(text):
        problems.append(f"{name} must be an integer number")
        return default
    # More than 12 significant digits is out of every range here (and int() refuses strings
    # beyond 4,300 digits), so such values are not converted.
    if len(text.lstrip("-").lstrip("0")) > 12:
        value = low - 1 if text.startswith("-") else high + 1
    else:
        value = int(text)
    if value < low:
        problems.append(f"{name} must not be less than {low}")
    elif value > high:
        problems.append(f"{name} must not be greater than {high}")
    return value


def _timestamp(params: dict[str, str], name: str, problems: list[str]) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    value = parse_timestamp(text)
    if value is None:
        problems.append(f"{name} must be a valid ISO 8601 date string")
    return value
