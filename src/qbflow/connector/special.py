"""The few actions a catalog row cannot say: they look records up by more than an Id, check more than a
field at a time, or move files.

    get_customer            by Id or by email address (or display name)
    get_account, get_product  by Id or by name
    create_journal_entry    debits must equal credits, refused before QBO is called, naming both sums
    find_or_create_customer / find_or_create_vendor   one call, no duplicates even when two runs race
    upload_attachment       base64 content, a local file or an http(s) URL; linked to any record
    get_attachment          the file (base64) with its name, type and size
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, Field, StringConstraints, create_model, field_validator, model_validator

from qbflow.catalog.entities import ENTITIES, Kind, Op
from qbflow.connector.actions import (
    EntityActions,
    InputField,
    RecordId,
    ShortText,
    Text,
    build_body,
    create_input_model,
    created_lookup,
    row,
)
from qbflow.connector.base import (
    PATTERN_TEXT,
    Action,
    ActionContext,
    ActionInput,
    ActionInputError,
    CreatedLookup,
    FieldError,
    InputProblem,
)
from qbflow.connector.refs import AmbiguousReference, RefObject, RefValue, candidate, ref_description, resolve_record
from qbflow.errors import QBFlowError
from qbflow.qbo.errors import DuplicateName
from qbflow.qbo.query import Query
from qbflow.qbo.tls import tls_context

__all__ = ["MAX_ATTACHMENT_BYTES", "NameTaken", "JournalLine", "generate_special"]

MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024  # QBO's per-file limit
_NAME_PARTS = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")


class NameTaken(QBFlowError):
    """Find-or-create could not create: the display name belongs to a record of another kind (QuickBooks
    names are unique across customers, vendors and employees together)."""


# --- get by Id, email or name ---------------------------------------------------------------------------------
def _lookup_model(entity: str, *, by_email: bool) -> type[BaseModel]:
    noun = ENTITIES[entity].title.lower()
    name_field = ENTITIES[entity].name_field
    keys = ("id", "email", "name") if by_email else ("id", "name")
    fields: dict[str, Any] = {
        "id": (RecordId | None, Field(None, description=f"The {noun}'s Id.")),
        "email": (ShortText | None, Field(None, description=f"The {noun}'s primary email address (exactly, "
                                                            f"ignoring case; active {noun}s only).")),
        "name": (ShortText | None, Field(None, description=f"The {noun}'s {name_field}, exactly, ignoring case "
                                                           f"(\"Parent:Child\" for a sub-{noun}).")),
    }

    def exactly_one(self: BaseModel) -> BaseModel:
        if len([k for k in keys if getattr(self, k) is not None]) != 1:
            raise FieldError("id", f"give exactly one of {', '.join(keys[:-1])} or {keys[-1]}")
        return self

    # pydantic's stubs say Callable, its docs (and create_model) take the decorators' descriptors.
    validators: dict[str, Any] = {"_exactly_one": model_validator(mode="after")(exactly_one)}
    return create_model(f"Get{entity}Input", __base__=ActionInput,
                        __doc__=f"The {noun} to read: by {', '.join(keys[:-1])} or {keys[-1]}.",
                        __validators__=validators, **{k: fields[k] for k in keys})


def _get_by_handler(entity: str):
    async def handle(ctx: ActionContext, model: Any) -> dict:
        if model.id is not None:
            return await ctx.qbo.get(entity, model.id)
        how = "email" if getattr(model, "email", None) is not None else "name"
        value = RefObject(**{how: getattr(model, how)})
        _, record, ref = await resolve_record(ctx, how, (entity,), value, use_cache=False)
        return record if record is not None else await ctx.qbo.get(entity, ref["value"])

    return handle


# --- journal entry --------------------------------------------------------------------------------------------
PositiveMoney = Annotated[float, Field(allow_inf_nan=False, gt=0, le=1e12)]


class JournalLine(ActionInput):
    """One line of a journal entry: an account debited or credited."""

    account: RefValue = Field(description=ref_description(("Account",), "The account posted to."))
    debit: PositiveMoney | None = Field(None, description="Amount debited (give debit or credit).")
    credit: PositiveMoney | None = Field(None, description="Amount credited (give debit or credit).")
    description: Text | None = Field(None, description="Line description.")
    party: RefValue | None = Field(None, description=ref_description(
        ("Customer", "Vendor", "Employee"),
        "Who the line is about (needed on Accounts Receivable / Payable lines). A bare Id means a customer."))

    @model_validator(mode="after")
    def _debit_or_credit(self) -> JournalLine:
        if (self.debit is None) == (self.credit is None):
            raise FieldError("debit", "give exactly one of debit or credit")
        return self


def _cents(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _balanced(cls, lines: list[JournalLine]) -> list[JournalLine]:
    debits = sum((_cents(line.debit) for line in lines if line.debit is not None), Decimal("0"))
    credits = sum((_cents(line.credit) for line in lines if line.credit is not None), Decimal("0"))
    if debits != credits:
        raise ValueError(f"debits must equal credits: debits total {debits:.2f}, credits total {credits:.2f}")
    return lines


async def _journal_lines(ctx: ActionContext, name: str, lines: list[JournalLine]) -> list[dict]:
    out = []
    for index, line in enumerate(lines):
        detail: dict[str, Any] = {
            "PostingType": "Debit" if line.debit is not None else "Credit",
            "AccountRef": (await resolve_record(ctx, f"{name}[{index}].account", ("Account",), line.account))[2],
        }
        if line.party is not None:
            entity, _, ref = await resolve_record(ctx, f"{name}[{index}].party", ("Customer", "Vendor", "Employee"),
                                                  line.party)
            ref.pop("type", None)
            detail["Entity"] = {"Type": entity, "EntityRef": ref}
        wire: dict[str, Any] = {"Amount": line.debit if line.debit is not None else line.credit,
                                "DetailType": "JournalEntryLineDetail", "JournalEntryLineDetail": detail}
        if line.description is not None:
            wire["Description"] = line.description
        out.append(wire)
    return out


JOURNAL_ROW = EntityActions("JournalEntry", frozenset({"create"}), (
    InputField("lines", "Line", Annotated[list[JournalLine], Field(min_length=2)],
               "The lines, at least two; the debits must add up to the credits.", build=_journal_lines),
    *[f for f in row("Invoice").fields if f.name in ("txn_date", "doc_number", "private_note")],
    InputField("adjustment", "Adjustment", bool, "Mark it as an adjusting entry."),
))


def _journal_model() -> type[BaseModel]:
    return create_input_model(JOURNAL_ROW, name="CreateJournalEntryInput",
                              doc="A journal entry: lines debiting and crediting accounts, which must balance.",
                              validators={"_balanced": field_validator("lines")(_balanced)})


async def _create_journal_entry(ctx: ActionContext, model: BaseModel) -> dict:
    body = await build_body(ctx, JOURNAL_ROW, model)
    return await ctx.qbo.create("JournalEntry", body, request_id=ctx.write_id())


# --- find or create ----------------------------------------------------------------------------------------
def _upsert_model(entity: str) -> type[BaseModel]:
    def need_a_key(self: BaseModel) -> BaseModel:
        names = ("display_name", "email", "given_name", "family_name", "title", "middle_name", "suffix")
        if all(getattr(self, n, None) is None for n in names):
            raise FieldError("display_name", "give email or display_name (or the name parts)")
        return self

    return create_input_model(
        row(entity), name=f"FindOrCreate{entity}Input", required=False,
        doc=f"The {entity.lower()} to find, by email first, then by display name; and what it is created with "
            f"when none matches.",
        validators={"_need_a_key": model_validator(mode="after")(need_a_key)})


def _display_name(model: BaseModel) -> str:
    """The DisplayName a find-or-create uses: the one given, else the name parts, else the email address.
    (The model is made per entity from the catalog: its fields are read by name.)"""
    given: str | None = getattr(model, "display_name", None)
    if given:
        return given
    parts = [getattr(model, p, None) for p in ("title", "given_name", "middle_name", "family_name", "suffix")]
    email: str = getattr(model, "email", None) or ""  # the model's validator wants a name part or the email
    return " ".join(p for p in parts if p) or email


async def _existing(ctx: ActionContext, entity: str, email: str | None, name: str | None) -> dict | None:
    """The one active record with this email (else this display name), None, or AmbiguousReference."""
    for field, query in (("email", email and Query(entity).where(PrimaryEmailAddr=email)),
                         ("display_name", name and Query(entity).where(DisplayName=name))):
        if not query:
            continue
        found = await ctx.qbo.query(query.where(Active=True).max(11))
        if len(found) == 1:
            return found[0]
        if found:
            candidates = [candidate(entity, r) for r in found]
            listed = "; ".join(f"Id {c['id']} \"{c['name']}\"" + (f" <{c['email']}>" if c.get("email") else "")
                               for c in candidates)
            raise AmbiguousReference(f"{field}: {len(found)} active {entity.lower()}s match: {listed}; cannot tell "
                                     f"which one to use", field=field, value=email if field == "email" else name,
                                     candidates=candidates)
    return None


def _upsert_handler(entity: str):
    r = row(entity)

    async def handle(ctx: ActionContext, model: BaseModel) -> dict:
        name = _display_name(model)
        found = await _existing(ctx, entity, getattr(model, "email", None), name)
        if found is not None:
            return {"record": found, "created": False}
        body = await build_body(ctx, r, model)
        body["DisplayName"] = name  # sent explicitly: the name is what QBO keeps unique, and what we re-check
        try:
            record = await ctx.qbo.create(entity, body, request_id=ctx.write_id("create"))
        except DuplicateName as error:
            # Another run created it between our query and our create (or another kind owns the name).
            found = await _existing(ctx, entity, getattr(model, "email", None), name)
            if found is not None:
                return {"record": found, "created": False}
            raise NameTaken(f"display_name: {name!r} is already used by another customer, vendor or employee "
                            f"(QuickBooks keeps names unique across all three); give another display_name") from error
        return {"record": record, "created": True}

    return handle


# --- attachments -------------------------------------------------------------------------------------------
_ATTACHABLE_TARGETS = {
    name: e for name, e in ENTITIES.items()
    if e.kind in (Kind.TRANSACTION, Kind.NAME_LIST) and e.supports(Op.READ)
}


def _entity_named(text: str) -> str | None:
    wanted = text.replace(" ", "").replace("_", "").lower()
    for name, definition in _ATTACHABLE_TARGETS.items():
        if wanted in (name.lower(), definition.title.replace(" ", "").lower()):
            return name
    return None


_URL_PATTERN = r"(?i)^https?://\S+$"
PATTERN_TEXT[_URL_PATTERN] = "an http:// or https:// URL"


class UploadAttachmentInput(ActionInput):
    """A file to attach, where it comes from, and the record it belongs to."""

    entity: ShortText | None = Field(None, description="The kind of record to attach the file to: a transaction "
                                                       "or list, by QuickBooks name or title (Invoice, Bill, "
                                                       "Expense, Customer, Vendor, Product...).")
    record: RefValue | None = Field(None, description="The record to attach the file to: its Id, or for customers, "
                                                      "vendors, accounts and products also its name (or email).")
    content_base64: str | None = Field(None, description="The file's bytes, base64-encoded (give this, path or "
                                                         "url).")
    path: ShortText | None = Field(None, description="A file on the machine running qbflow.")
    url: Annotated[str, StringConstraints(pattern=_URL_PATTERN, max_length=4000)] | None = Field(
        None, description="An http(s) URL the file is downloaded from.")
    file_name: ShortText | None = Field(None, description="File name shown in QuickBooks; taken from the path or "
                                                          "URL when left out (required with content_base64).")
    content_type: ShortText | None = Field(None, description="MIME type, e.g. application/pdf; guessed from the "
                                                             "file name (or the download) when left out.")
    note: Text | None = Field(None, description="A note on the attachment.")
    include_on_send: bool = Field(False, description="Email the file along with the transaction when it is sent.")

    @field_validator("entity")
    @classmethod
    def _known_entity(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name = _entity_named(value)
        if name is None:
            raise ValueError("expected a transaction or list QuickBooks keeps records of, e.g. Invoice, Bill, "
                             "Expense, Customer, Vendor")
        return name

    @field_validator("content_base64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected base64 (A-Z, a-z, 0-9, +, /, with = padding)") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> UploadAttachmentInput:
        sources = [k for k in ("content_base64", "path", "url") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise FieldError("content_base64", "give exactly one of content_base64, path or url")
        if self.content_base64 is not None and self.file_name is None:
            raise FieldError("file_name", "required with content_base64")
        if (self.entity is None) != (self.record is None):
            raise FieldError("record" if self.record is None else "entity",
                             "give entity and record together (or neither, for an unlinked file)")
        return self


def _bad(title: str, field: str, value: Any, expected: str) -> ActionInputError:
    return ActionInputError(title, [InputProblem(field, value, expected)])


def _source_name(model: UploadAttachmentInput) -> str:
    """The file's name as its source gives it (without reading the file or downloading the URL)."""
    if model.content_base64 is not None:
        return model.file_name or "attachment"
    if model.path is not None:
        return Path(model.path).name
    return unquote(PurePosixPath(urlsplit(model.url or "").path).name) or "attachment"


async def _read_source(ctx: ActionContext, model: UploadAttachmentInput) -> tuple[bytes, str, str | None]:
    """(content, file name, content type the source announced)."""
    title = "Upload Attachment"
    if model.content_base64 is not None:
        return base64.b64decode(model.content_base64), model.file_name or "attachment", None
    if model.path is not None:
        try:
            path = Path(model.path).expanduser()
        except RuntimeError:  # "~someone/..." for a user this machine does not know
            raise _bad(title, "path", model.path, "an existing file") from None
        if not path.is_file():
            raise _bad(title, "path", model.path, "an existing file")
        if path.stat().st_size > MAX_ATTACHMENT_BYTES:
            raise _bad(title, "path", model.path, f"a file of at most {MAX_ATTACHMENT_BYTES} bytes")
        return await asyncio.to_thread(path.read_bytes), path.name, None
    url = model.url
    assert url is not None, "exactly one source (the model's validator)"
    default_name = _source_name(model)
    client = ctx.http or httpx.AsyncClient(follow_redirects=True, timeout=60.0, verify=tls_context())
    try:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise _bad(title, "url", url, f"a URL that answers with the file (it answered HTTP "
                                              f"{response.status_code})")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ATTACHMENT_BYTES:
                    raise _bad(title, "url", url, f"a file of at most {MAX_ATTACHMENT_BYTES} bytes")
                chunks.append(chunk)
            announced = response.headers.get("content-type", "").split(";")[0].strip() or None
            return b"".join(chunks), default_name, announced
    except httpx.HTTPError as error:
        raise _bad(title, "url", url, f"a URL that can be downloaded ({type(error).__name__})") from None
    finally:
        if ctx.http is None:
            await client.aclose()


async def _link(ctx: ActionContext, model: UploadAttachmentInput) -> tuple[str, str] | None:
    """(entity, Id) of the record the file is attached to, or None."""
    if model.entity is None:
        return None
    assert model.record is not None, "entity and record come together (the model's validator)"
    entity, _, ref = await resolve_record(ctx, "record", (model.entity,), model.record)
    return entity, ref["value"]


async def _upload_attachment(ctx: ActionContext, model: UploadAttachmentInput) -> dict:
    link = await _link(ctx, model)
    content, default_name, announced = await _read_source(ctx, model)
    if not content:
        raise _bad("Upload Attachment", "content_base64" if model.content_base64 else (model.path and "path") or "url",
                   f"{len(content)} bytes", "a file that is not empty")
    file_name = model.file_name or default_name
    content_type = (model.content_type or mimetypes.guess_type(file_name)[0] or announced
                    or "application/octet-stream")
    record = await ctx.qbo.upload_attachment(file_name, content, content_type, link_to=link, note=model.note,
                                             request_id=ctx.write_id())
    return await _include_on_send(ctx, model, record)


async def _include_on_send(ctx: ActionContext, model: UploadAttachmentInput, record: dict) -> dict:
    """The attachment marked to go out with its transaction, when the input asks for it and it is not yet."""
    refs = record.get("AttachableRef") or []
    if not (model.include_on_send and model.entity is not None) or all(r.get("IncludeOnSend") for r in refs):
        return record
    refs = [dict(r, IncludeOnSend=True) for r in refs]
    return await ctx.qbo.update("Attachable", {"Id": record["Id"], "SyncToken": record["SyncToken"],
                                               "FileName": record.get("FileName"), "AttachableRef": refs},
                                sparse=True, request_id=ctx.write_id("include-on-send"))


async def _uploaded_body(ctx: ActionContext, model: UploadAttachmentInput) -> dict:
    """What an upload sends, as far as it is known without reading the file (its name, link, note and, when
    the input or the name says it, its type): how an earlier attempt's Attachable is recognised."""
    file_name = model.file_name or _source_name(model)
    body: dict[str, Any] = {"FileName": file_name}
    content_type = model.content_type or mimetypes.guess_type(file_name)[0]
    if content_type is not None:
        body["ContentType"] = content_type
    link = await _link(ctx, model)
    if link is not None:
        body["AttachableRef"] = [{"EntityRef": {"type": link[0], "value": link[1]}}]
    if model.note:
        body["Note"] = model.note
    return body


class GetAttachmentInput(ActionInput):
    """The attachment to read."""

    id: RecordId = Field(description="The attachment's (Attachable's) Id.")


async def _get_attachment(ctx: ActionContext, model: GetAttachmentInput) -> dict:
    record = await ctx.qbo.get("Attachable", model.id)
    content = await ctx.qbo.download_attachment(model.id)
    return {
        "id": record["Id"],
        "file_name": record.get("FileName"),
        "content_type": record.get("ContentType"),
        "size": len(content),
        "content_base64": base64.b64encode(content).decode("ascii"),
        "note": record.get("Note"),
        "linked_to": [{"entity": (link.get("EntityRef") or {}).get("type"),
                       "id": (link.get("EntityRef") or {}).get("value")}
                      for link in record.get("AttachableRef") or []],
        "attachable": record,
    }


# --- the list ----------------------------------------------------------------------------------------------
def generate_special() -> dict[str, Action]:
    """The special actions, by key."""
    record = "as QuickBooks returns it (Id, SyncToken, MetaData and its fields)."
    actions = [
        Action("get_customer", "Get Customer", "Reads a customer by Id, or finds the active one with an email "
               "address (or display name); more than one match is an error listing them.",
               _lookup_model("Customer", by_email=True), f"The Customer {record}", _get_by_handler("Customer"),
               "Customer", "get"),
        Action("get_account", "Get Account", "Reads an account by Id, or finds the active one with a name "
               "(\"Parent:Child\" for a sub-account).", _lookup_model("Account", by_email=False),
               f"The Account {record}", _get_by_handler("Account"), "Account", "get"),
        Action("get_product", "Get Product", "Reads a product or service (QBO Item) by Id, or finds the active one "
               "with a name.", _lookup_model("Item", by_email=False), f"The Item {record}",
               _get_by_handler("Item"), "Item", "get"),
        Action("create_journal_entry", "Create Journal Entry",
               "Records a journal entry. Debits must equal credits: an unbalanced entry is refused before "
               "QuickBooks is called, naming both sums.", _journal_model(), f"The JournalEntry {record}",
               _create_journal_entry, "JournalEntry", "create", created_lookup(JOURNAL_ROW)),
        Action("upload_attachment", "Upload Attachment",
               "Uploads a file (base64 content, a local file or a URL) to QuickBooks and links it to a "
               "transaction or list record.", UploadAttachmentInput,
               f"The Attachable {record} (FileName, ContentType, Size, AttachableRef, TempDownloadUri).",
               _upload_attachment, "Attachable", "upload", CreatedLookup(_uploaded_body, _include_on_send)),
        Action("get_attachment", "Get Attachment", "Downloads an attachment: its file as base64, with its name, "
               "type and size.", GetAttachmentInput,
               "{\"id\", \"file_name\", \"content_type\", \"size\": bytes, \"content_base64\", \"note\", "
               "\"linked_to\": [{\"entity\", \"id\"}], \"attachable\": the Attachable record}.", _get_attachment,
               "Attachable", "get"),
    ]
    for entity in ("Customer", "Vendor"):
        noun = ENTITIES[entity].title
        actions.append(Action(
            f"find_or_create_{noun.lower()}", f"Find or Create {noun}",
            f"Returns the active {noun.lower()} with this email (else this display name), creating it when none "
            f"exists (its display name: the one given, else the name parts, else the email). One call; safe when "
            f"two runs race (QuickBooks keeps display names unique, and a run that loses the race returns the "
            f"winner's record).", _upsert_model(entity),
            f"{{\"record\": the {entity} as QuickBooks returns it, \"created\": true when it was created now}}.",
            _upsert_handler(entity), entity, "find_or_create"))
    return {a.key: a for a in actions}
