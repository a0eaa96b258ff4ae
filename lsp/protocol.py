"""JSON-RPC details: method names, error codes, and a protocol that answers malformed requests.

pygls 2.1 validates params while decoding a message; when that fails it logs and drops the message,
so a request with bad params never gets a response and the client waits forever. The protocol here
turns such a request into an InvalidParams error response instead (and drops bad notifications
with a log line).
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types as lsp

import attrs
from lsprotocol import converters
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest, JsonRpcServerNotInitialized
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, LanguageServerProtocol

log = logging.getLogger(__name__)

# Custom methods (documented in docs/lsp.md).
INFILL = "diffucode/infill"  # request: infill / rewrite / repair a range; cancellable
STATUS = "diffucode/status"  # request: model, jobs, memory
DENOISE_STEP = "diffucode/denoiseStep"  # notification (server -> client): intermediate text of a hole

# Commands the code actions run (the client registers them from executeCommandProvider).
CMD_INFILL = "diffucode.infillSelection"
CMD_REWRITE = "diffucode.rewriteSelection"
CMD_REPAIR = "diffucode.repairSelection"
MODES = {CMD_INFILL: "infill", CMD_REWRITE: "rewrite", CMD_REPAIR: "repair"}

TITLES = {"infill": "Infill selection", "rewrite": "Rewrite selection", "repair": "Repair low-confidence tokens"}

# LSP error codes beyond JSON-RPC's.
REQUEST_FAILED = -32803
CONTENT_MODIFIED = -32801


def request_failed(message: str) -> JsonRpcException:
    return JsonRpcException(message=message, code=REQUEST_FAILED)


def content_modified(message: str) -> JsonRpcException:
    return JsonRpcException(message=message, code=CONTENT_MODIFIED)


def invalid_params(message: str) -> JsonRpcException:
    return JsonRpcInvalidParams(message=message)


def converter_factory():
    """lsprotocol's converter, keeping params/results of custom methods as plain JSON values.

    (pygls' default turns them into namedtuples, renaming keys that are not identifiers.)"""
    conv = converters.get_converter()
    for cls in (JsonRPCRequestMessage, JsonRPCResponseMessage, JsonRPCNotification):
        conv.register_structure_hook(cls, lambda obj, cls: cls(**obj))
    return conv


@attrs.define
class _Undecodable:
    """A message whose params did not match the method's type."""

    id: Any
    method: str
    error: JsonRpcException
    jsonrpc: str = "2.0"


class DiffucodeProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]):
        if ("jsonrpc" in data and "method" in data and "params" not in data
                and self.get_message_type(data["method"]) is None):
            data["params"] = None  # JSON-RPC lets params be omitted; pygls' generic message types require it
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if not isinstance(data, dict) or "method" not in data:
                raise
            reason = exc.__cause__ or exc
            err = JsonRpcInvalidParams(message=f"invalid params for {data.get('method')!r}: {_short(reason)}")
            return _Undecodable(data.get("id"), str(data.get("method")), err)

    def handle_message(self, message):
        if isinstance(message, _Undecodable):
            if message.id is None:
                log.warning("dropped notification %s: %s", message.method, message.error.message)
            else:
                self._send_response(message.id, error=message.error.to_response_error())
            return
        method, msg_id = getattr(message, "method", None), getattr(message, "id", None)
        if method is not None and msg_id is not None:  # a request: LSP's lifecycle rules
            err = None
            if self._shutdown:
                err = JsonRpcInvalidRequest(message=f"{method}: the server is shutting down")
            elif method == lsp.INITIALIZE and self._workspace is not None:
                err = JsonRpcInvalidRequest(message="initialize may be sent only once")
            elif method != lsp.INITIALIZE and self._workspace is None:
                err = JsonRpcServerNotInitialized(message=f"{method}: the server is not initialized")
            if err is not None:
                self._send_response(msg_id, error=err.to_response_error())
                return
        elif method is not None and method != lsp.EXIT and self._workspace is None:
            return  # notifications before initialize are dropped (LSP)
        super().handle_message(message)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    subs = getattr(exc, "exceptions", None)  # cattrs ClassValidationError groups the field errors
    if subs:
        text += ": " + "; ".join(_short(e) for e in subs[:3])
    return text[:300]


# -- params of the custom request and the commands ----------------------------------------------------
def command_target(arg: Any, conv) -> tuple[str, lsp.Range, int | None]:
    if not isinstance(arg, dict):
        raise TypeError(f"argument is {type(arg).__name__}, not an object")
    rng = conv.structure(arg["range"], lsp.Range)
    version = arg.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise TypeError("version must be an integer")
    return str(arg["uri"]), rng, version


def infill_params(params: Any, conv):
    """Validate diffucode/infill params: {textDocument: {uri, version?}, range, mode?, instruction?, options?, apply?,
    workDoneToken?}.

    options: generation settings (camelCase, as in the server settings) plus "snap" (bool)."""
    if not isinstance(params, dict):
        raise invalid_params("params must be an object")
    try:
        td = params["textDocument"]
        uri = td["uri"]
        if not isinstance(uri, str):
            raise TypeError("textDocument.uri must be a string")
        version = td.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise TypeError("textDocument.version must be an integer")
        rng = conv.structure(params["range"], lsp.Range)
    except Exception as exc:  # KeyError, TypeError, cattrs' ClassValidationError
        raise invalid_params(f"diffucode/infill needs textDocument.uri and range: {exc!r}"[:300]) from exc
    mode = params.get("mode", "infill")
    if mode not in TITLES and mode != "instruct":
        raise invalid_params(f"mode must be one of {', '.join([*TITLES, 'instruct'])}, got {mode!r}")
    instruction = params.get("instruction")
    if mode == "instruct" and (not isinstance(instruction, str) or not instruction.strip()):
        raise invalid_params("mode 'instruct' needs a non-empty instruction string")
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise invalid_params("options must be an object")
    if not isinstance(options.get("snap", False), bool):
        raise invalid_params("options.snap must be true or false")
    apply = params.get("apply", False)
    if not isinstance(apply, bool):
        raise invalid_params("apply must be true or false")
    token = params.get("workDoneToken")
    if token is not None and (isinstance(token, bool) or not isinstance(token, (str, int))):
        raise invalid_params("workDoneToken must be a string or an integer")
    return uri, rng, mode, options, version, apply, token, instruction
