"""Domain errors. Each carries its HTTP status; `app.api.problems` renders them."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    status: int = 400
    title: str = "Bad request"
    type_slug: str = "about:blank"
    default_headers: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        self.headers: dict[str, str] = dict(self.default_headers)
        super().__init__(self.detail)


class NotFound(DomainError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class Unprocessable(DomainError):
    """A well-formed request whose content breaks a business rule (422)."""

    status = 422
    title = "Unprocessable content"
    type_slug = "validation-error"

    def __init__(self, detail: str, *, loc: list[str | int] | None = None) -> None:
        super().__init__(detail)
        self.errors = [{"loc": loc or ["body"], "msg": detail, "type": "value_error"}]


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition failed"
    type_slug = "precondition-failed"


class PreconditionRequired(DomainError):
    status = 428
    title = "Precondition required"
    type_slug = "precondition-required"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"
    default_headers = (("WWW-Authenticate", "Bearer"),)


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"
    type_slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(max(1, retry_after))


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


class ServiceUnavailable(DomainError):
    status = 503
    title = "Service unavailable"
    type_slug = "service-unavailable"
    default_headers = (("Retry-After", "5"),)


# Resource-specific errors: the names say what happened, the bases say the status.
class ProductNotFound(NotFound):
    title = "Product not found"


class CategoryNotFound(NotFound):
    title = "Category not found"


class UserNotFound(NotFound):
    title = "User not found"


class SkuTaken(Conflict):
    title = "SKU already in use"
    type_slug = "sku-taken"


class SlugTaken(Conflict):
    title = "Slug already in use"
    type_slug = "slug-taken"


class EmailTaken(Conflict):
    title = "Email already in use"
    type_slug = "email-taken"


class CategoryInUse(Conflict):
    title = "Category in use"
    type_slug = "category-in-use"


class InsufficientStock(Conflict):
    title = "Insufficient stock"
    type_slug = "insufficient-stock"


class VersionMismatch(PreconditionFailed):
    title = "Resource has changed"


class InvalidCredentials(Unauthorized):
    """The same answer for an unknown email, a wrong password and a deactivated account."""

    title = "Invalid credentials"
    type_slug = "invalid-credentials"


class InvalidRefreshToken(Unauthorized):
    title = "Invalid refresh token"
    type_slug = "invalid-refresh-token"


class LoginThrottled(TooManyRequests):
    title = "Too many failed logins"


class SelfLockout(Conflict):
    """An admin may not delete, deactivate or demote their own account (409)."""

    title = "Cannot lock yourself out"
    type_slug = "self-lockout"


class IdempotencyKeyInUse(Conflict):
    title = "Idempotency key in use"
    type_slug = "idempotency-key-in-use"
    default_headers = (("Retry-After", "1"),)


class IdempotencyKeyReused(Unprocessable):
    title = "Idempotency key reused"
    type_slug = "idempotency-key-reused"


class NotAcceptable(DomainError):
    status = 406
    title = "Not acceptable"
    type_slug = "not-acceptable"


class ImportFileInvalid(Unprocessable):
    """The import file as a whole is unusable (a bad CSV header): nothing applied."""

    title = "Import file invalid"
    type_slug = "import-file-invalid"
