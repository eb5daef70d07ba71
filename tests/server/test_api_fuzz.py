"""The API fuzzed from its own OpenAPI schema (schemathesis) against the real server on SQLite, with
the admin token and a device token: no request, valid or not, gets a 5xx, a status code the schema
does not document, or a body outside the documented schema. Bounded: a few dozen examples per
operation (about a minute and a half here)."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from otaml.image.synthetic import build_app_image
from tests.utils.devices import HttpDevice
from tests.utils.processes import Cli, ServerProcess

pytestmark = pytest.mark.e2e
EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One server for every operation: a release on stable, an enrolled device that polled."""
    from otaml.manifest import signing

    root = tmp_path_factory.mktemp("fuzz")
    srv = ServerProcess(root / "data").start()
    key = root / "keys" / "release.pem"
    signing.write_keypair(signing.generate_key(), key)
    image = root / "otaml1_1.bin"
    image.write_bytes(build_app_image("1.1"))
    assert Cli(srv, key, root)("publish", "1.1", str(image)).returncode == 0
    device = HttpDevice.enroll(srv, "fuzz-dev")
    assert device.poll().status_code == 200
    started = time.monotonic()
    yield srv, device
    print(f"schemathesis: {time.monotonic() - started:.0f} s against {srv.url}")
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()[-3000:]


def test_no_request_gets_a_5xx_or_an_undocumented_answer(fuzzed):
    srv, device = fuzzed
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    sent = {"n": 0}
    failures: list[str] = []

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def fuzz(case):  # type: ignore[no-untyped-def]
            token = srv.admin_token
            if case.path.endswith("/events") and case.method == "POST":
                token = device.token  # the device's own route, half the time for its real id
                if case.path_parameters is not None and sent["n"] % 2:
                    case.path_parameters["device_id"] = device.device_id
            sent["n"] += 1
            case.call_and_validate(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            fuzz()
        except BaseException as e:  # keep going: one report names every operation that failed
            if isinstance(e, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {str(e)[:1500]}")
    print(f"schemathesis: {sent['n']} requests over {len(operations)} operations")
    assert not failures, "\n\n".join(failures)
