"""Attachments as QBO handles them: multipart upload to /upload, an Attachable linked to records by
AttachableRef, and short-lived download links (TempDownloadUri, 900 s) served by the sandbox itself.

The multipart body is read here rather than by Starlette's form parser, because real clients send bodies
that parser refuses or misreads, and QBO accepts them all:

* python-quickbooks builds the body with bare LF line breaks, gives neither part a filename, and sends
  the file base64-encoded with ``Content-Transfer-Encoding: base64``;
* quickbooks-ruby (recordings/attachment/create_for_invoice.yml) sends CRLF, filenames on both parts and
  ``Content-Transfer-Encoding: binary``;
* node-quickbooks sends only ``file_content_01`` (no metadata part);
* the Java SDK names its parts ``file_metadata_<5 chars>_<n>`` / ``file_content_<5 chars>_<n>``;
* the PHP SDKs may send the metadata as XML (``<Attachable xmlns="http://schema.intuit.com/finance/v3">``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import quopri
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from qbflow.sandbox import faults
from qbflow.sandbox.faults import Fault

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books
    from qbflow.sandbox.clock import Clock
    from qbflow.sandbox.storage import Storage

MAX_SIZE = 100 * 1024 * 1024  # QBO's per-file limit: 100 MB
TEMP_URL_SECONDS = 900
# File types QBO accepts for attachments, by extension, with their content types.
ALLOWED = {
    "ai": "application/postscript", "csv": "text/csv", "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "eps": "application/postscript", "gif": "image/gif", "jpeg": "image/jpeg", "jpg": "image/jpeg",
    "jpe": "image/jpeg", "ods": "application/vnd.oasis.opendocument.spreadsheet", "pdf": "application/pdf",
    "png": "image/png", "rtf": "text/rtf", "tif": "image/tiff", "tiff": "image/tiff", "txt": "text/plain",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xml": "text/xml",
}
ALLOWED_TYPES = frozenset(ALLOWED.values()) | {"application/xml", "text/xml", "image/jpg", "image/pjpeg",
                                              "application/rtf", "application/x-pdf", "text/comma-separated-values"}
# Read-only fields of an Attachable the server fills in; a client's values for them are ignored.
_SERVER_FIELDS = ("Id", "SyncToken", "FileAccessUri", "TempDownloadUri", "Size", "ThumbnailFileAccessUri",
                  "ThumbnailTempDownloadUri", "MetaData", "domain", "sparse", "status")
METADATA_PREFIX = "file_metadata_"
CONTENT_PREFIX = "file_content_"


@dataclass
class Part:
    """One part of a multipart/form-data body, its content already transfer-decoded."""

    name: str
    filename: str | None
    content_type: str | None  # lower case, without parameters; None when the part has no Content-Type
    transfer_encoding: str  # lower case; "" when absent
    content: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart body, accepting CRLF or bare LF line breaks (python-quickbooks sends LF).

    Raises Fault 2010 for a body that is not multipart at all; a part whose transfer encoding cannot be
    decoded keeps its raw bytes and is refused later, for that file alone.
    """
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        raise faults.invalid("multipart/form-data request has no boundary parameter", "Content-Type")
    marker = re.escape(boundary.encode("latin-1"))
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + marker + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    matches = list(delimiter.finditer(body))
    if not matches:
        raise faults.invalid("multipart body has no part delimited by its boundary", "Content-Type")
    parts = []
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        if match.group(1):  # the close delimiter: what follows is the epilogue
            break
        raw = body[match.end(): following.start() if following else len(body)]
        parts.append(_part(raw))
    return parts


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _part(raw: bytes) -> Part:
    if raw.startswith((b"\r\n", b"\n")):
        head, content = b"", raw[2 if raw.startswith(b"\r\n") else 1:]
    else:
        blank = _BLANK_LINE.search(raw)
        head, content = (raw[:blank.start()], raw[blank.end():]) if blank else (raw, b"")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    headers = HeaderParser().parsestr(text)
    name = _param(headers, "name") or ""
    filename = headers.get_filename()
    media = headers.get_content_type() if "content-type" in headers else None
    encoding = str(headers.get("content-transfer-encoding", "")).strip().lower()
    return Part(name, filename or None, media, encoding, content)


def _param(headers: Message, key: str) -> str | None:
    value = headers.get_param(key, header="content-disposition")
    if isinstance(value, tuple):  # RFC 2231 (charset, language, text)
        value = value[2]
    return None if value is None else str(value)


def _decode(part: Part) -> bytes:
    """The part's bytes once its Content-Transfer-Encoding (base64, quoted-printable) is undone."""
    if part.transfer_encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", part.content), validate=True)
        except (binascii.Error, ValueError):
            raise faults.invalid(f"{part.name} is marked Content-Transfer-Encoding: base64 but is not valid "
                                 "base64", part.name) from None
    if part.transfer_encoding == "quoted-printable":
        return quopri.decodestring(part.content)
    return part.content


def _metadata(part: Part) -> dict:
    """The Attachable a file_metadata part describes, from JSON or (as older SDKs send it) XML."""
    raw = _decode(part).strip()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw:
        return {}
    if raw.startswith(b"<"):
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError:
            raise faults.invalid(f"{part.name} is not well-formed XML", part.name) from None
        meta: Any = _from_xml(root)
        meta = meta if isinstance(meta, dict) else {}
    else:
        try:
            meta = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise faults.unparsable_body() from None
        if not isinstance(meta, dict):
            raise faults.invalid(f"{part.name} must hold an Attachable object", part.name)
        meta = meta.get("Attachable", meta)
        if not isinstance(meta, dict):
            raise faults.invalid(f"{part.name} must hold an Attachable object", part.name)
    return meta


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _from_xml(element: ElementTree.Element) -> Any:
    """QBO's XML-to-JSON mapping: attributes become keys, an element's text with attributes is "value"."""
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return {"true": True, "false": False}.get(text, text)
    out: dict[str, Any] = {_local(k): v for k, v in element.attrib.items()}
    if not children:
        out["value"] = text
        return out
    for child in children:
        key = _local(child.tag)
        value = _from_xml(child)
        if key == "AttachableRef":
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


class Attachments:
    def __init__(self, books: Books, storage: Storage, clock: Clock, secret: str) -> None:
        self.books, self.storage, self.clock, self.secret = books, storage, clock, secret

    async def upload(self, realm: str, request: Request) -> list[dict]:
        """One AttachableResponse entry per uploaded file: the Attachable, or a Fault for that file."""
        self.books.company(realm)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            raise faults.invalid("Content-Type must be multipart/form-data for /upload", "Content-Type")
        parts = parse_multipart(content_type, await request.body())
        metadata: dict[str, Part] = {}
        contents: list[tuple[str, Part]] = []
        for part in parts:
            if part.name.startswith(METADATA_PREFIX):
                metadata[part.name[len(METADATA_PREFIX):]] = part
            elif part.name.startswith(CONTENT_PREFIX):
                contents.append((part.name[len(CONTENT_PREFIX):], part))
        if not contents:
            raise faults.required("file_content_01")
        answers = []
        for suffix, part in contents:
            try:
                record = self._one(realm, part, metadata.get(suffix))
                answers.append({"Attachable": self.with_temp_url(realm, record, str(request.base_url))})
            except Fault as fault:
                answers.append({"Fault": {"Error": [fault.error()], "type": fault.type}})
        return answers

    def _one(self, realm: str, part: Part, meta_part: Part | None) -> dict:
        meta = _metadata(meta_part) if meta_part is not None else {}
        content = _decode(part)
        filename = str(meta.get("FileName") or part.filename or "")
        if not filename:
            raise faults.required("FileName")
        content_type = str(meta.get("ContentType") or part.content_type or "").split(";")[0].strip().lower()
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if not content_type or content_type == "application/octet-stream":
            content_type = ALLOWED.get(extension, content_type)
        if extension not in ALLOWED or content_type not in ALLOWED_TYPES:
            raise faults.business(f"Unsupported file type: {filename} ({content_type or 'no content type'}). "
                                  f"Allowed: {', '.join(sorted(ALLOWED))}.", "ContentType")
        if len(content) > MAX_SIZE:
            raise faults.business(f"File {filename} is {len(content)} bytes; the maximum is {MAX_SIZE} bytes.",
                                  "Size")
        if not content:
            raise faults.business(f"File {filename} is empty.", "Size")
        body = {k: v for k, v in meta.items() if k not in _SERVER_FIELDS and v not in (None, "", [], {})}
        body.update({"FileName": filename, "ContentType": content_type, "Size": len(content)})
        record = self.books.create(realm, "Attachable", body)
        self.storage.save_blob(f"{realm}/{record['Id']}", content)
        record = {**record, "FileAccessUri": f"/v3/company/{realm}/download/{record['Id']}"}
        self.books.save(self.books.company(realm), "Attachable", record)
        return record

    def _signature(self, realm: str, record_id: str, expires: int) -> str:
        mac = hmac.new(self.secret.encode(), f"{realm}/{record_id}/{expires}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def temp_url(self, realm: str, record_id: str, base_url: str) -> str:
        record = self.books.get(realm, "Attachable", record_id)
        if "FileName" not in record or self.storage.load_blob(f"{realm}/{record_id}") is None:
            raise faults.not_found()
        expires = int(self.clock.time()) + TEMP_URL_SECONDS
        return (f"{base_url.rstrip('/')}/_sandbox/files/{realm}/{record_id}/{quote(record['FileName'])}"
                f"?X-Amz-Expires={TEMP_URL_SECONDS}&Expires={expires}"
                f"&Signature={self._signature(realm, record_id, expires)}")

    def with_temp_url(self, realm: str, record: dict, base_url: str) -> dict:
        if "FileAccessUri" not in record:
            return record
        record = copy.deepcopy(record)
        record["TempDownloadUri"] = self.temp_url(realm, record["Id"], base_url)
        return record

    async def serve(self, request: Request) -> Response:
        """The presigned-URL stand-in: no bearer token, but a valid signature that has not expired."""
        realm, record_id = request.path_params["realm"], request.path_params["record_id"]
        try:
            expires = int(request.query_params.get("Expires", "0"))
        except ValueError:
            expires = 0
        signature = request.query_params.get("Signature", "")
        if not hmac.compare_digest(signature, self._signature(realm, record_id, expires)):
            return PlainTextResponse("SignatureDoesNotMatch", status_code=403)
        if self.clock.time() > expires:
            return PlainTextResponse("Request has expired", status_code=403)
        key = f"{realm}/{record_id}"
        content = self.storage.load_blob(key)
        company = self.books.companies.get(realm)
        record = company.table("Attachable").get(record_id) if company is not None else None
        if record is None and content is not None:
            self.storage.delete_blob(key)  # the Attachable was deleted: its file goes with it
        if content is None or record is None:
            return PlainTextResponse("NoSuchKey", status_code=404)
        filename = quote(str(record.get("FileName") or record_id))
        return Response(content, media_type=record.get("ContentType") or "application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
