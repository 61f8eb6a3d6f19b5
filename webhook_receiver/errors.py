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
