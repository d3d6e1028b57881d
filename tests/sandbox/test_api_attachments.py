"""Attachments over plain HTTP: multipart /upload in the styles real clients use, the Attachable it creates,
/download and the short-lived file URL, and deleting an Attachable.

Expected shapes come from real recordings (../shared/qbo/recordings/attachment/ and qbo_api's
error_estimate.yml).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
import yaml

from tests.support.recordings import RECORDINGS as ALL_RECORDINGS

pytestmark = pytest.mark.asyncio

RECORDINGS = ALL_RECORDINGS / "attachment"
QBO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
XML_FILE = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            b'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3"><Fault type="AUTHENTICATION">'
            b'<Error code="3200"><Message>message=ApplicationAuthenticationFailed</Message></Error>'
            b"</Fault></IntuitResponse>\n")
# Every byte value, so that a part decoded as text (or not base64-decoded) cannot pass unnoticed.
PNG_LIKE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-a-boundary\r\n" + bytes(range(255, -1, -1))
BOUNDARY = "-----------RubyMultipartPost-9c1abaa2ebc0a964ff482b00f4711e31"


def multipart(parts: list[tuple[dict[str, str], bytes]], boundary: str = BOUNDARY, eol: bytes = b"\r\n") -> bytes:
    """A multipart body built by hand, so each part can carry its own headers (httpx cannot do that)."""
    out = b""
    for headers, content in parts:
        out += b"--" + boundary.encode() + eol
        for key, value in headers.items():
            out += f"{key}: {value}".encode() + eol
        out += eol + content + eol
    return out + b"--" + boundary.encode() + b"--" + eol


def disposition(name: str, filename: str | None = None) -> str:
    return f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")


def metadata_part(meta: dict, name: str = "file_metadata_01", **headers: str) -> tuple[dict[str, str], bytes]:
    return {"Content-Disposition": disposition(name, "attachment.json"), "Content-Type": "application/json",
            "Content-Transfer-Encoding": "binary", **headers}, json.dumps(meta).encode()


def content_part(data: bytes, filename: str | None, content_type: str, name: str = "file_content_01",
                 encoding: str = "binary") -> tuple[dict[str, str], bytes]:
    return {"Content-Disposition": disposition(name, filename), "Content-Type": content_type,
            "Content-Transfer-Encoding": encoding}, data


def link(entity: str, value: str) -> dict:
    return {"AttachableRef": [{"EntityRef": {"type": entity, "value": value}}]}


async def upload(http, api, body: bytes, boundary: str = BOUNDARY) -> httpx.Response:
    return await http.post(api("upload"), content=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


async def upload_one_parts(http, api, parts: list[tuple[dict[str, str], bytes]]) -> dict:
    """The Attachable of a successful one-file upload."""
    response = await upload(http, api, multipart(parts))
    assert response.status_code == 200, response.text
    answers = response.json()["AttachableResponse"]
    assert len(answers) == 1 and set(answers[0]) == {"Attachable"}, answers
    return answers[0]["Attachable"]


async def upload_one(http, api, meta: dict | None, data: bytes, filename: str | None, content_type: str) -> dict:
    parts = [metadata_part(meta)] if meta is not None else []
    return await upload_one_parts(http, api, [*parts, content_part(data, filename, content_type)])


@pytest.fixture
async def invoice_id(http, api) -> str:
    response = await http.post(api("invoice"), json={"CustomerRef": {"value": "1"}, "Line": [
        {"Amount": 75.0, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    assert response.status_code == 200, response.text
    return response.json()["Invoice"]["Id"]


@pytest.fixture
async def anonymous(sandbox):
    """A client holding no token, as a browser or an SDK following TempDownloadUri is."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as c:
        yield c


def recorded_body(cassette: str, index: int = 0) -> dict:
    interactions = yaml.safe_load((RECORDINGS / cassette).read_text())["http_interactions"]
    return json.loads(interactions[index]["response"]["body"]["string"])


def error_of(fault: dict) -> dict:
    assert len(fault["Error"]) == 1
    return fault["Error"][0] | {"type": fault["type"]}


# --- upload ---------------------------------------------------------------------------------------------


async def test_ruby_style_upload_answers_the_recorded_shape(http, api, realm, invoice_id):
    meta = {**link("Invoice", invoice_id), "FileName": "no_detail.xml", "ContentType": "text/xml"}
    response = await upload(http, api, multipart([metadata_part(meta),
                                                   content_part(XML_FILE, "no_detail.xml", "text/xml")]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"AttachableResponse", "time"}
    [answer] = body["AttachableResponse"]
    attachable = answer["Attachable"]
    recorded = recorded_body("create_for_invoice.yml")["AttachableResponse"][0]["Attachable"]
    assert set(attachable) == set(recorded)
    attachable_id = attachable["Id"]
    assert re.fullmatch(r"\d{19}", attachable_id)
    assert attachable["FileName"] == "no_detail.xml"
    assert attachable["FileAccessUri"] == f"/v3/company/{realm}/download/{attachable_id}"
    assert attachable["Size"] == len(XML_FILE)
    assert attachable["ContentType"] == "text/xml"
    assert attachable["AttachableRef"] == [{"EntityRef": {"type": "Invoice", "value": invoice_id},
                                            "IncludeOnSend": False}]
    assert (attachable["domain"], attachable["sparse"], attachable["SyncToken"]) == ("QBO", False, "0")
    assert QBO_DATETIME.match(attachable["MetaData"]["CreateTime"])
    temp = urlsplit(attachable["TempDownloadUri"])
    assert temp.scheme == "http" and temp.path.endswith("/no_detail.xml")
    assert parse_qs(temp.query)["X-Amz-Expires"] == ["900"]
    # The same record is what a read and a query return.
    read = (await http.get(api(f"attachable/{attachable_id}"))).json()["Attachable"]
    assert {k: v for k, v in read.items() if k != "TempDownloadUri"} == \
        {k: v for k, v in attachable.items() if k != "TempDownloadUri"}
    query = await http.get(api("query"), params={"query": f"select * from Attachable where Id = '{attachable_id}'"})
    assert query.json()["QueryResponse"]["Attachable"][0]["FileName"] == "no_detail.xml"


async def test_python_quickbooks_style_upload_lf_base64_no_filenames(http, api, anonymous, invoice_id):
    """python-quickbooks' exact framing: bare LF line breaks, a leading newline, no filename on either part,
    the metadata pretty-printed with its defaults, the file base64 with Content-Transfer-Encoding."""
    boundary = "-------------PythonMultipartPost"
    meta = json.dumps({"AttachableRef": [{"EntityRef": {"type": "Invoice", "value": invoice_id},
                                          "IncludeOnSend": False}],
                       "ContentType": "image/png", "FileName": "receipt.png", "Note": "", "SyncToken": 0,
                       "domain": "QBO", "sparse": False}, sort_keys=True, indent=4)
    body = (f"\n--{boundary}\nContent-Disposition: form-data; name=\"file_metadata_01\"\n"
            f"Content-Type: application/json\n\n{meta}\n\n"
            f"--{boundary}\nContent-Disposition: form-data; name=\"file_content_01\"\n"
            f"Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n"
            f"{base64.b64encode(PNG_LIKE).decode('ascii')}\n\n--{boundary}--\n")
    response = await upload(http, api, body.encode(), boundary)
    assert response.status_code == 200, response.text
    [answer] = response.json()["AttachableResponse"]
    attachable = answer["Attachable"]
    assert attachable["FileName"] == "receipt.png"
    assert attachable["ContentType"] == "image/png"
    assert attachable["Size"] == len(PNG_LIKE)
    assert attachable["SyncToken"] == "0"
    assert "Note" not in attachable  # an empty value is left out, as QBO leaves out every empty field
    fetched = await anonymous.get(attachable["TempDownloadUri"])
    assert fetched.status_code == 200
    assert fetched.content == PNG_LIKE


async def test_base64_part_with_crlf_and_filename(http, api, anonymous, invoice_id):
    encoded = base64.encodebytes(PNG_LIKE)  # wrapped at 76 columns, as MIME encoders do
    attachable = await upload_one_parts(http, api, [
        metadata_part({**link("Invoice", invoice_id), "FileName": "scan.png"}),
        content_part(encoded, "scan.png", "image/png", encoding="base64"),
    ])
    assert attachable["Size"] == len(PNG_LIKE)
    assert (await anonymous.get(attachable["TempDownloadUri"])).content == PNG_LIKE


async def test_upload_without_metadata_then_link_by_update(http, api, realm, invoice_id):
    """node-quickbooks sends only file_content_01, then links the file with an Attachable update."""
    attachable = await upload_one(http, api, None, b"plain notes\n", "notes.txt", "text/plain")
    assert attachable["FileName"] == "notes.txt"
    assert attachable["ContentType"] == "text/plain"
    assert attachable["Size"] == 12
    assert attachable["FileAccessUri"] == f"/v3/company/{realm}/download/{attachable['Id']}"
    assert not attachable.get("AttachableRef")
    response = await http.post(api("attachable"), json={"Id": attachable["Id"], "SyncToken": "0", "sparse": True,
                                                        **link("Invoice", invoice_id)})
    assert response.status_code == 200, response.text
    linked = response.json()["Attachable"]
    assert linked["SyncToken"] == "1"
    assert linked["AttachableRef"] == [{"EntityRef": {"type": "Invoice", "value": invoice_id},
                                        "IncludeOnSend": False}]
    assert linked["FileName"] == "notes.txt" and linked["Size"] == 12
    assert linked["FileAccessUri"] == attachable["FileAccessUri"]


async def test_content_type_comes_from_the_extension_when_the_part_says_octet_stream(http, api):
    attachable = await upload_one(http, api, None, b"%PDF-1.4 tiny", "statement.pdf", "application/octet-stream")
    assert attachable["ContentType"] == "application/pdf"


async def test_java_sdk_part_names_pair_metadata_and_content(http, api, invoice_id):
    attachable = await upload_one_parts(http, api, [
        metadata_part({**link("Invoice", invoice_id), "FileName": "java.txt", "Note": "from the Java SDK"},
                      name="file_metadata_8f3a1_0"),
        content_part(b"java bytes", "java.txt", "text/plain", name="file_content_8f3a1_0"),
    ])
    assert attachable["Note"] == "from the Java SDK"
    assert attachable["AttachableRef"][0]["EntityRef"] == {"type": "Invoice", "value": invoice_id}


async def test_xml_metadata_as_older_sdks_send_it(http, api, invoice_id):
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><ns0:Attachable xmlns:ns0="http://schema.intuit.com/finance/v3">'
           f'<ns0:AttachableRef><ns0:EntityRef type="Invoice">{invoice_id}</ns0:EntityRef>'
           f"<ns0:IncludeOnSend>true</ns0:IncludeOnSend></ns0:AttachableRef>"
           f"<ns0:FileName>7374.jpg</ns0:FileName><ns0:Category>Image</ns0:Category></ns0:Attachable>").encode()
    attachable = await upload_one_parts(http, api, [
        ({"Content-Disposition": disposition("file_metadata_0"), "Content-Type": "application/xml; charset=UTF-8",
          "Content-Transfer-Encoding": "8bit"}, xml),
        content_part(base64.b64encode(b"\xff\xd8\xff\xe0jpeg"), "7374.jpg", "image/jpeg", name="file_content_0",
                     encoding="base64"),
    ])
    assert attachable["FileName"] == "7374.jpg" and attachable["ContentType"] == "image/jpeg"
    assert attachable["Category"] == "Image"
    assert attachable["Size"] == 8
    assert attachable["AttachableRef"] == [{"EntityRef": {"type": "Invoice", "value": invoice_id},
                                            "IncludeOnSend": True}]


async def test_several_files_answer_in_order_with_a_fault_for_the_bad_one(http, api, invoice_id):
    response = await upload(http, api, multipart([
        metadata_part({**link("Invoice", invoice_id), "FileName": "a.txt"}, name="file_metadata_01"),
        content_part(b"first", "a.txt", "text/plain", name="file_content_01"),
        metadata_part({**link("Estimate", "75"), "FileName": "b.txt"}, name="file_metadata_02"),
        content_part(b"second", "b.txt", "text/plain", name="file_content_02"),
        content_part(b"third", "c.csv", "text/csv", name="file_content_03"),
    ]))
    assert response.status_code == 200
    answers = response.json()["AttachableResponse"]
    assert [set(a) for a in answers] == [{"Attachable"}, {"Fault"}, {"Attachable"}]
    assert [answers[0]["Attachable"]["FileName"], answers[2]["Attachable"]["FileName"]] == ["a.txt", "c.csv"]
    assert answers[2]["Attachable"]["ContentType"] == "text/csv"


async def test_link_to_a_missing_estimate_is_a_fault_inside_a_200(http, api):
    """Recorded (qbo_api spec/vcr/attachment/error_estimate.yml): HTTP 200, the Fault in the array."""
    meta = {**link("Estimate", "75"), "FileName": "no_detail.xml", "ContentType": "text/xml"}
    response = await upload(http, api, multipart([metadata_part(meta),
                                                   content_part(XML_FILE, "no_detail.xml", "text/xml")]))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"AttachableResponse", "time"}
    assert body["AttachableResponse"] == [{"Fault": {"Error": [{
        "Message": "A business validation error has occurred while processing your request",
        "Detail": "Business Validation Error: The entity Estimate 75 that you are trying to link does not exist. "
                  "Estimate 75",
        "code": "6000", "element": ""}], "type": "ValidationFault"}}]
    # Nothing was kept.
    count = await http.get(api("query"), params={"query": "select count(*) from Attachable"})
    assert count.json()["QueryResponse"] == {"totalCount": 0}


async def test_attachable_json_create_with_missing_link_matches_qbo(http, api):
    response = await http.post(api("attachable"), json={**link("Estimate", "75"), "Note": "a note"})
    assert response.status_code == 400
    assert error_of(response.json()["Fault"]) == {
        "Message": "A business validation error has occurred while processing your request",
        "Detail": "Business Validation Error: The entity Estimate 75 that you are trying to link does not exist. "
                  "Estimate 75",
        "code": "6000", "element": "", "type": "ValidationFault"}


@pytest.mark.parametrize(("filename", "content_type"), [
    ("setup.exe", "application/x-msdownload"),
    ("script.sh", "text/plain"),  # allowed content type, extension QBO refuses
    ("photo.png", "application/x-msdownload"),  # allowed extension, content type QBO refuses
    ("README", "text/plain"),  # no extension at all
])
async def test_unsupported_file_types_are_a_per_file_fault(http, api, filename, content_type):
    response = await upload(http, api, multipart([content_part(b"MZ\x90\x00", filename, content_type)]))
    assert response.status_code == 200
    [answer] = response.json()["AttachableResponse"]
    error = error_of(answer["Fault"])
    assert error["code"] == "6000" and error["type"] == "ValidationFault"
    assert error["Detail"].startswith(f"Business Validation Error: Unsupported file type: {filename} ")
    assert "pdf" in error["Detail"] and "png" in error["Detail"]


async def test_per_file_refusals(http, api):
    response = await upload(http, api, multipart([
        content_part(b"", "empty.txt", "text/plain", name="file_content_01"),
        content_part(b"@@not base64@@", "bad.txt", "text/plain", name="file_content_02", encoding="base64"),
        metadata_part({"FileName": "x.txt"}, name="file_metadata_03"),
        content_part(b"x", None, "text/plain", name="file_content_03"),
        ({"Content-Disposition": disposition("file_metadata_04")}, b"{not json"),
        content_part(b"y", "y.txt", "text/plain", name="file_content_04"),
        content_part(b"z", None, "text/plain", name="file_content_05"),
    ]))
    assert response.status_code == 200
    answers = response.json()["AttachableResponse"]
    assert [set(a) for a in answers] == [{"Fault"}, {"Fault"}, {"Attachable"}, {"Fault"}, {"Fault"}]
    empty, bad64, named, bad_json, nameless = answers
    assert error_of(empty["Fault"])["Detail"] == "Business Validation Error: File empty.txt is empty."
    assert error_of(bad64["Fault"])["code"] == "2010"
    assert named["Attachable"]["FileName"] == "x.txt"  # the name may come from the metadata alone
    assert error_of(bad_json["Fault"])["code"] == "2010"
    assert error_of(nameless["Fault"])["Detail"] == "Required parameter FileName is missing in the request"


async def test_request_level_refusals(http, api, sandbox, realm):
    response = await http.post(api("upload"), json={"FileName": "a.txt"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "2010"
    response = await http.post(api("upload"), content=b"--x\r\n\r\nno parts here",
                               headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["Detail"] == \
        "multipart/form-data request has no boundary parameter"
    response = await upload(http, api, b"no delimiter anywhere")
    assert response.status_code == 400 and response.json()["Fault"]["Error"][0]["code"] == "2010"
    response = await upload(http, api, multipart([metadata_part({"FileName": "a.txt"})]))
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["Detail"] == \
        "Required parameter file_content_01 is missing in the request"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as c:
        response = await c.post(f"/v3/company/{realm}/upload", content=multipart(
            [content_part(b"x", "a.txt", "text/plain")]),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code == 401
    assert response.json()["fault"]["error"][0]["code"] == "3200"


# --- read, download and the temporary URL -------------------------------------------------------------


async def test_read_gives_a_fresh_temp_download_uri(http, api, sandbox, anonymous, invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), XML_FILE, "no_detail.xml", "text/xml")
    sandbox.clock.advance(30)
    response = await http.get(api(f"attachable/{attachable['Id']}"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Attachable", "time"}
    fresh = body["Attachable"]["TempDownloadUri"]
    assert fresh != attachable["TempDownloadUri"]
    first_expiry = int(parse_qs(urlsplit(attachable["TempDownloadUri"]).query)["Expires"][0])
    assert int(parse_qs(urlsplit(fresh).query)["Expires"][0]) == first_expiry + 30
    for url in (attachable["TempDownloadUri"], fresh):
        fetched = await anonymous.get(url)
        assert fetched.status_code == 200 and fetched.content == XML_FILE
    # The fresher link outlives the first one.
    sandbox.clock.advance(880)
    assert (await anonymous.get(attachable["TempDownloadUri"])).status_code == 403
    assert (await anonymous.get(fresh)).status_code == 200


async def test_download_answers_a_plain_text_url_that_serves_the_exact_bytes(http, api, sandbox, anonymous,
                                                                             invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), PNG_LIKE, "scan.png", "image/png")
    response = await http.get(api(f"download/{attachable['Id']}"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    url = response.text
    assert url.startswith("http://sandbox.test/") and "\n" not in url
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["900"]
    fetched = await anonymous.get(url)
    assert fetched.status_code == 200
    assert fetched.content == PNG_LIKE
    assert fetched.headers["content-type"] == "image/png"
    assert 'filename="scan.png"' in fetched.headers["content-disposition"]
    # Valid for 900 seconds, then S3-style 403.
    sandbox.clock.advance(899)
    assert (await anonymous.get(url)).status_code == 200
    sandbox.clock.advance(2)
    expired = await anonymous.get(url)
    assert expired.status_code == 403 and expired.text == "Request has expired"


async def test_a_tampered_link_is_refused(http, api, anonymous, invoice_id):
    first = await upload_one(http, api, link("Invoice", invoice_id), b"one", "one.txt", "text/plain")
    second = await upload_one(http, api, link("Invoice", invoice_id), b"two", "two.txt", "text/plain")
    url = urlsplit((await http.get(api(f"download/{first['Id']}"))).text)
    query = parse_qs(url.query)
    signature = query["Signature"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    tampered = [
        url._replace(query=url.query.replace(signature, flipped)),
        url._replace(query=url.query.replace(f"Expires={query['Expires'][0]}",
                                             f"Expires={int(query['Expires'][0]) + 3600}")),
        url._replace(path=url.path.replace(first["Id"], second["Id"])),
        url._replace(query=url.query.replace(f"&Signature={signature}", "")),
    ]
    for bad in tampered:
        response = await anonymous.get(urlunsplit(bad))
        assert response.status_code == 403, urlunsplit(bad)
        assert response.text == "SignatureDoesNotMatch"
        assert b"one" not in response.content


async def test_download_of_unknown_or_fileless_attachable(http, api):
    response = await http.get(api("download/5000000000000999999"))
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "610"
    note = await http.post(api("attachable"), json={"Note": "just a note"})
    assert note.status_code == 200
    assert "FileAccessUri" not in note.json()["Attachable"]
    response = await http.get(api(f"download/{note.json()['Attachable']['Id']}"))
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "610"


# --- delete ---------------------------------------------------------------------------------------------


async def test_delete_attachable(http, api, anonymous, invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), b"bye", "bye.txt", "text/plain")
    url = attachable["TempDownloadUri"]
    response = await http.post(api("attachable"), params={"operation": "delete"},
                               json={"Id": attachable["Id"], "SyncToken": "0"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Attachable", "time"}
    recorded = recorded_body("delete_attachment.yml")["Attachable"]
    assert body["Attachable"] == {**recorded, "Id": attachable["Id"]}
    assert body["Attachable"] == {"domain": "QBO", "status": "Deleted", "Id": attachable["Id"]}
    assert (await http.get(api(f"attachable/{attachable['Id']}"))).json()["Fault"]["Error"][0]["code"] == "610"
    assert (await http.get(api(f"download/{attachable['Id']}"))).status_code == 400
    assert (await anonymous.get(url)).status_code == 404
    # Deleting again finds nothing.
    again = await http.post(api("attachable"), params={"operation": "delete"},
                            json={"Id": attachable["Id"], "SyncToken": "0"})
    assert again.status_code == 400 and again.json()["Fault"]["Error"][0]["code"] == "610"


async def test_delete_attachable_with_a_stale_sync_token(http, api, invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), b"keep", "keep.txt", "text/plain")
    response = await http.post(api("attachable"), params={"operation": "delete"},
                               json={"Id": attachable["Id"], "SyncToken": "7"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "5010"
    assert (await http.get(api(f"attachable/{attachable['Id']}"))).status_code == 200


async def test_delete_attachable_with_only_the_id_as_recorded(http, api, invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), b"bye", "bye.txt", "text/plain")
    response = await http.post(api("attachable"), params={"operation": "delete"}, json={"Id": attachable["Id"]})
    assert response.status_code == 200, response.text
    assert response.json()["Attachable"] == {"domain": "QBO", "status": "Deleted", "Id": attachable["Id"]}


async def test_full_update_keeps_the_read_only_file_fields(http, api, invoice_id):
    attachable = await upload_one(http, api, None, b"12345", "five.txt", "text/plain")
    response = await http.post(api("attachable"), json={"Id": attachable["Id"], "SyncToken": "0",
                                                        "FileName": "five.txt", "Note": "renamed note",
                                                        **link("Invoice", invoice_id)})
    assert response.status_code == 200, response.text
    updated = response.json()["Attachable"]
    assert updated["Note"] == "renamed note"
    assert updated["Size"] == 5
    assert updated["FileAccessUri"] == attachable["FileAccessUri"]


async def test_queries_and_updates_of_attachables_carry_a_download_link(http, api, anonymous, invoice_id):
    attachable = await upload_one(http, api, link("Invoice", invoice_id), XML_FILE, "no_detail.xml", "text/xml")
    found = await http.get(api("query"), params={"query": f"select * from Attachable where Id = '{attachable['Id']}'"})
    listed = found.json()["QueryResponse"]["Attachable"][0]
    assert (await anonymous.get(listed["TempDownloadUri"])).content == XML_FILE
    updated = await http.post(api("attachable"), json={"Id": attachable["Id"], "SyncToken": attachable["SyncToken"],
                                                       "sparse": True, "Note": "signed copy"})
    changed = updated.json()["Attachable"]
    assert changed["Note"] == "signed copy"
    assert (await anonymous.get(changed["TempDownloadUri"])).content == XML_FILE
