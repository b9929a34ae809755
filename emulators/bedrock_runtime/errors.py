"""Service errors in the rest-json wire format botocore parses: status, `x-amzn-ErrorType` and a message."""

from __future__ import annotations


class ServiceError(Exception):
    """An error the emulator answers with; `code` is the botocore error shape name."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", 400, message)


def malformed(detail: str) -> ServiceError:
    """Bedrock's wording for a model body that fails the model's JSON schema."""
    return validation(f"Malformed input request: {detail}, please reformat your input and try again.")


def access_denied(message: str) -> ServiceError:
    return ServiceError("AccessDeniedException", 403, message)


def throttling() -> ServiceError:
    return ServiceError("ThrottlingException", 429, "Too many requests, please wait before trying again.")


def quota_exceeded(message: str) -> ServiceError:
    return ServiceError("ServiceQuotaExceededException", 400, message)


def conflict(message: str) -> ServiceError:
    return ServiceError("ConflictException", 400, message)


def internal(message: str = "The server encountered an internal error.") -> ServiceError:
    return ServiceError("InternalServerException", 500, message)


def model_error(message: str) -> ServiceError:
    """InvokeModel's ModelErrorException: the model failed on this request (HTTP 424)."""
    return ServiceError("ModelErrorException", 424, message)


def model_timeout(message: str) -> ServiceError:
    return ServiceError("ModelTimeoutException", 408, message)


# --- authentication: the answers of AWS's request authentication, before any operation runs -------------


def unrecognized_client() -> ServiceError:
    """An access key id AWS does not know."""
    return ServiceError(
        "UnrecognizedClientException", 403, "The security token included in the request is invalid."
    )


def invalid_signature(message: str) -> ServiceError:
    """A well-formed signature that does not verify: wrong secret, wrong scope, or outside the time window."""
    return ServiceError("InvalidSignatureException", 403, message)


def incomplete_signature(message: str) -> ServiceError:
    """An Authorization header missing one of its parts."""
    return ServiceError("IncompleteSignatureException", 400, message)
