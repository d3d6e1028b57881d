"""Attachments as QBO handles them: multipart upload to /upload, an Attachable linked to records by
AttachableRef, and short-lived download links (TempDownloadUri, 900 s) served by the sandbox itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.datastructures import UploadFile
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


class Attachments:
    def __init__(self, books: Books, storage: Storage, clock: Clock, secret: str) -> None:
        self.books, self.storage, self.clock, self.secret = books, storage, clock, secret

    async def upload(self, realm: str, request: Request) -> list[dict]:
        """One AttachableResponse entry per uploaded file: the Attachable, or a Fault for that file."""
        self.books.company(realm)
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise faults.invalid("Content-Type must be multipart/form-data for /upload", "Content-Type")
        form = await request.form(max_files=100, max_fields=200, max_part_size=MAX_SIZE)
        metadata: dict[str, object] = {}
        contents: dict[str, UploadFile | str] = {}
        for name, value in form.multi_items():
            if name.startswith("file_metadata_"):
                metadata[name[len("file_metadata_"):]] = value
            elif name.startswith("file_content_"):
                contents[name[len("file_content_"):]] = value
        if not contents:
            raise faults.required("file_content_01")
        answers = []
        for suffix, part in contents.items():
            try:
                record = await self._one(realm, part, metadata.get(suffix))
                answers.append({"Attachable": self.with_temp_url(realm, record, str(request.base_url))})
            except Fault as fault:
                answers.append({"Fault": {"Error": [fault.error()], "type": fault.type}})
        return answers

    async def _one(self, realm: str, part: UploadFile | str, meta_part: object) -> dict:
        meta: dict = {}
        if meta_part is not None:
            raw = await meta_part.read() if isinstance(meta_part, UploadFile) else str(meta_part).encode()
            try:
                meta = json.loads(raw or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise faults.invalid("file_metadata part is not valid JSON", "file_metadata") from None
            if not isinstance(meta, dict):
                raise faults.invalid("file_metadata part must be a JSON object", "file_metadata")
            meta = meta.get("Attachable", meta)
        if isinstance(part, UploadFile):
            content = await part.read()
            encoding = (part.headers.get("content-transfer-encoding") or "").lower()
            filename = part.filename
            part_type = part.content_type
        else:
            content, encoding, filename, part_type = part.encode(), "", None, None
        if encoding == "base64":
            try:
                content = base64.b64decode(content, validate=False)
            except (binascii.Error, ValueError):
                raise faults.invalid("file_content is marked base64 but is not valid base64",
                                     "file_content") from None
        filename = meta.get("FileName") or filename
        if not filename:
            raise faults.required("FileName")
        content_type = (meta.get("ContentType") or part_type or "").split(";")[0].strip().lower()
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
        body = {k: v for k, v in meta.items() if k not in ("Id", "SyncToken", "FileAccessUri", "TempDownloadUri")}
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
            raise faults.not_found("Attachable", record_id)
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
        content = self.storage.load_blob(f"{realm}/{record_id}")
        record = self.books.company(realm).table("Attachable").get(record_id)
        if content is None or record is None:
            return PlainTextResponse("NoSuchKey", status_code=404)
        return Response(content, media_type=record.get("ContentType", "application/octet-stream"),
                        headers={"Content-Disposition": f'attachment; filename="{quote(record["FileName"])}"'})
