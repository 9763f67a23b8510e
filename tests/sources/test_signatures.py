"""Each CRM's signature, against the vectors its documentation gives, and the traps in each."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from duly.sources import verify
from duly.sources.verify import SignatureError

NOW = 1_764_000_000.0  # a fixed clock, in seconds
NOW_MS = int(NOW * 1000)


def hubspot_v3_signature(secret: str, method: str, uri: str, body: str, timestamp: str) -> str:
    """As HubSpot's request-validation docs say: base64(HMAC-SHA256(secret, m+uri+body+ts))."""
    signed = (method + uri + body + timestamp).encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


# --- HubSpot v3 ----------------------------------------------------------------------------------


def test_hubspot_v3_accepts_the_documented_construction() -> None:
    body = '[{"eventId":1,"objectId":123}]'
    uri = "https://duly.example.com/api/sources/hubspot"
    signature = hubspot_v3_signature("secret", "POST", uri, body, str(NOW_MS))
    verify.hubspot_v3("secret", "POST", uri, body.encode(), str(NOW_MS), signature, now=NOW)


def test_hubspot_v3_signs_the_uri_with_the_listed_characters_decoded() -> None:
    # HubSpot decodes %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B before signing, no others
    sent = "https://duly.example.com/api/sources/hubspot?next=a%3Ab%2Fc%40d%2Ce&space=x%20y"
    signed_as = "https://duly.example.com/api/sources/hubspot?next=a:b/c@d,e&space=x%20y"
    signature = hubspot_v3_signature("secret", "POST", signed_as, "[]", str(NOW_MS))
    verify.hubspot_v3("secret", "POST", sent, b"[]", str(NOW_MS), signature, now=NOW)
    # signing the URI as it was sent (undecoded) is what HubSpot does not do
    undecoded = hubspot_v3_signature("secret", "POST", sent, "[]", str(NOW_MS))
    with pytest.raises(SignatureError, match="does not match"):
        verify.hubspot_v3("secret", "POST", sent, b"[]", str(NOW_MS), undecoded, now=NOW)


def test_hubspot_v3_timestamp_is_milliseconds_not_seconds() -> None:
    uri = "https://duly.example.com/h"
    seconds = str(int(NOW))
    signature = hubspot_v3_signature("secret", "POST", uri, "[]", seconds)
    with pytest.raises(SignatureError, match="replay window"):
        verify.hubspot_v3("secret", "POST", uri, b"[]", seconds, signature, now=NOW)


def test_hubspot_v3_refuses_a_request_older_than_five_minutes() -> None:
    uri = "https://duly.example.com/h"
    old = str(NOW_MS - 301_000)
    signature = hubspot_v3_signature("secret", "POST", uri, "[]", old)
    with pytest.raises(SignatureError, match="301 s old"):
        verify.hubspot_v3("secret", "POST", uri, b"[]", old, signature, now=NOW)
    recent = str(NOW_MS - 299_000)
    signature = hubspot_v3_signature("secret", "POST", uri, "[]", recent)
    verify.hubspot_v3("secret", "POST", uri, b"[]", recent, signature, now=NOW)


def test_hubspot_v3_is_base64_not_hex() -> None:
    uri = "https://duly.example.com/h"
    signed = f"POST{uri}[]{NOW_MS}".encode()
    hex_digest = hmac.new(b"secret", signed, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match="does not match"):
        verify.hubspot_v3("secret", "POST", uri, b"[]", str(NOW_MS), hex_digest, now=NOW)


def test_hubspot_v3_refuses_another_body_or_secret() -> None:
    uri = "https://duly.example.com/h"
    signature = hubspot_v3_signature("secret", "POST", uri, "[1]", str(NOW_MS))
    with pytest.raises(SignatureError):
        verify.hubspot_v3("secret", "POST", uri, b"[2]", str(NOW_MS), signature, now=NOW)
    with pytest.raises(SignatureError):
        verify.hubspot_v3("other", "POST", uri, b"[1]", str(NOW_MS), signature, now=NOW)
    with pytest.raises(SignatureError, match="unsigned"):
        verify.hubspot_v3("secret", "POST", uri, b"[1]", None, signature, now=NOW)


def test_hubspot_v2_matches_the_documented_example() -> None:
    # HubSpot's docs: secret yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy, GET
    # https://www.example.com/webhook_uri, no body -> eee2dddc...200e
    documented = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    verify.hubspot_v2(secret, "GET", "https://www.example.com/webhook_uri", b"", documented)
    with pytest.raises(SignatureError):
        verify.hubspot_v2(secret, "POST", "https://www.example.com/webhook_uri", b"", documented)


# --- Standard Webhooks -------------------------------------------------------------------------


def test_standard_webhooks_matches_the_reference_vector() -> None:
    # the reference libraries' test vector
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    message_id, timestamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330"
    verify.standard_webhooks(secret, message_id, timestamp, signature, body, now=1614265330)
    # several signatures (a rotated secret): one valid is enough
    both = f"v1,AAAAbad= {signature}"
    verify.standard_webhooks(secret, message_id, timestamp, both, body, now=1614265330)
    with pytest.raises(SignatureError, match="replay window"):
        verify.standard_webhooks(
            secret, message_id, timestamp, signature, body, now=1614265331 + 300
        )
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify.standard_webhooks(secret, "msg_other", timestamp, signature, body, now=1614265330)


def test_standard_webhooks_key_is_the_base64_after_whsec() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body, message_id, timestamp = b"{}", "msg_1", str(int(NOW))
    # a sender that used the text of the secret as the key is not the scheme
    wrong = hmac.new(secret.encode(), f"{message_id}.{timestamp}.{{}}".encode(), hashlib.sha256)
    given = "v1," + base64.b64encode(wrong.digest()).decode()
    with pytest.raises(SignatureError):
        verify.standard_webhooks(secret, message_id, timestamp, given, body, now=NOW)


# --- Pipedrive, Salesforce Flow ----------------------------------------------------------------


def test_pipedrive_basic_credentials() -> None:
    header = "Basic " + base64.b64encode(b"duly:s3cret").decode()
    verify.pipedrive_basic("duly:s3cret", header)
    with pytest.raises(SignatureError, match="do not match"):
        verify.pipedrive_basic("duly:other", header)
    with pytest.raises(SignatureError, match="no HTTP Basic"):
        verify.pipedrive_basic("duly:s3cret", None)
    with pytest.raises(SignatureError, match="not HTTP Basic"):
        verify.pipedrive_basic("duly:s3cret", "Basic !!!")


def test_salesforce_flow_shared_secret() -> None:
    verify.shared_secret("s3cret", "s3cret", "X-Duly-Secret")
    with pytest.raises(SignatureError, match="does not match"):
        verify.shared_secret("s3cret", "guess", "X-Duly-Secret")
    with pytest.raises(SignatureError, match="no X-Duly-Secret"):
        verify.shared_secret("s3cret", None, "X-Duly-Secret")
