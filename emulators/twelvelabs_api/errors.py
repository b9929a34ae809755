"""The API's error answers: an HTTP status, the documented `code` and a message naming the field."""

from __future__ import annotations


class ApiFault(Exception):
    """An error answer: HTTP status, the API's `code`, and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self, enveloped: bool = False) -> dict[str, object]:
        """`{"code", "message"}`, or that inside `{"error": ...}` (the `ErrorResponse` some answers use)."""
        flat: dict[str, object] = {"code": self.code, "message": self.message}
        return {"error": flat} if enveloped else flat


def invalid(message: str) -> ApiFault:
    return ApiFault(400, "parameter_invalid", message)


def not_found(resource_id: str, collection: str) -> ApiFault:
    """The documented `resource_not_exist` answer."""
    return ApiFault(
        404, "resource_not_exist", f"Resource with id {resource_id} does not exist in {collection}."
    )
