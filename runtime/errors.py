"""The project's own errors: one base class, so that the CLI, the service and batches can
tell a refusal the project explains from a bug.

Each class states how it is answered, in sight where it is declared: `exit_code` (README "Exit
codes") and `http_status` (`headers` adds e.g. Retry-After). The CLI and the service's one
handler read them; there is no other table. Subclasses also derive from the built-in kind they
refine (ValueError, FileNotFoundError, RuntimeError), so code that catches those keeps working.
"""
from __future__ import annotations

# Exit codes (README "Exit codes").
EXIT_FAILED = 1  # one of our errors without a code of its own
EXIT_MISSING_MODELS = 3
EXIT_BAD_INPUT = 4
EXIT_ENVIRONMENT = 5
EXIT_BAD_CHECKPOINT = 6
EXIT_EXPORT_MISMATCH = 7
EXIT_CANNOT_LISTEN = 8

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before the answer


class TryonError(Exception):
    """An error whose message says what was wrong and what is accepted.

    The defaults are for an error that has not said otherwise: exit 1, and a 422 (the request
    could not be carried out, and the message says why) rather than a 500, which would call
    an explained refusal a bug."""
    exit_code: int = EXIT_FAILED
    http_status: int = 422
    headers: dict[str, str] | None = None  # extra response headers (Retry-After, Connection)


class InputError(TryonError, ValueError):
    """Something a user gave (an image, an option, a file name) cannot be used."""
    exit_code, http_status = EXIT_BAD_INPUT, 422


class BadRequest(InputError):
    """A request the service cannot read at all (a body that is not JSON)."""
    exit_code, http_status = EXIT_BAD_INPUT, 400


class NotFound(InputError, LookupError):
    """An id that names nothing (a person unknown, deleted or expired; a garment)."""
    exit_code, http_status = EXIT_BAD_INPUT, 404


class Unavailable(TryonError, RuntimeError):
    """The service cannot do this now; `retry_after` (seconds), when given, becomes the
    Retry-After header."""
    exit_code, http_status = EXIT_ENVIRONMENT, 503

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers = {"Retry-After": str(retry_after)}

    def __reduce__(self):  # pickled across processes (Ray) with its Retry-After
        return type(self), (str(self), self.retry_after)


class StoreUnavailable(Unavailable):
    """The person store could not keep or give a parsed person."""
    exit_code, http_status = EXIT_ENVIRONMENT, 503


class ModelsMissingError(TryonError, FileNotFoundError):
    """Exported ONNX files are not where they were looked for."""
    exit_code, http_status = EXIT_MISSING_MODELS, 503  # the service's fault, not the request's


class ModelMismatchError(ModelsMissingError):
    """A model file is not the one manifest.json recorded at export."""
    exit_code, http_status = EXIT_MISSING_MODELS, 503


class RuntimeSetupError(TryonError, RuntimeError):
    """The environment cannot run models (missing onnxruntime, missing provider)."""
    exit_code, http_status = EXIT_ENVIRONMENT, 503
