"""The receiver's exception hierarchy; each class maps to one HTTP answer."""


class WebhookError(Exception):
    """Root of every error the webhook receiver raises on purpose."""

    status = 400
    title = "Bad request"


class MalformedPayload(WebhookError):
    """The request cannot be read as this gateway's event (HTTP 400)."""

    status = 400
    title = "Malformed webhook"


class SignatureInvalid(WebhookError):
    """The signature is missing, malformed or matches no configured secret (HTTP 401)."""

    status = 401
    title = "Signature invalid"


class TimestampOutOfTolerance(SignatureInvalid):
    """The signed timestamp is too old or too far in the future (HTTP 401)."""

    title = "Signature timestamp out of tolerance"


class SourceNotAllowed(SignatureInvalid):
    """The request came from outside the gateway's allowed networks (HTTP 401)."""

    title = "Source address not allowed"


class GatewayUnknown(WebhookError):
    """No such gateway, or it has no secret configured (HTTP 404)."""

    status = 404
    title = "Unknown gateway"


class ApiError(Exception):
    """Root of every error the service API answers on purpose, as a problem document."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.extra = extra


class Invalid(ApiError):
    """The request body or parameters are malformed or fail validation (HTTP 400)."""

    status = 400
    title = "Invalid request"


class Unauthorized(ApiError):
    """No bearer token, or one that is malformed, expired or wrongly signed (HTTP 401)."""

    status = 401
    title = "Unauthorized"


class Forbidden(ApiError):
    """The token is valid but lacks the scope the call needs (HTTP 403)."""

    status = 403
    title = "Forbidden"


class NotFound(ApiError):
    """No such resource, or none this token may see (HTTP 404)."""

    status = 404
    title = "Not found"


class Conflict(ApiError):
    """The request conflicts with the resource's state or an earlier request (HTTP 409)."""

    status = 409
    title = "Conflict"


class Unprocessable(ApiError):
    """Well-formed, but the business rules refuse it (HTTP 422)."""

    status = 422
    title = "Unprocessable request"


class ReportUnreadable(WebhookError):
    """A gateway report file that is not shaped as that gateway documents it."""

    status = 400
    title = "Unreadable report"


class CatchupFailed(WebhookError):
    """A gateway's API could not be read (unreachable, refused the key, or answered oddly)."""

    status = 502
    title = "Gateway API unavailable"
