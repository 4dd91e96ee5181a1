"""Tests of the generated Avi custom IPAM script against a live gateway.

Driven by tests/api/avi_python.rs (plain `cargo test` runs it), which starts a TLS gateway on the
standard lab topology, writes the script with the library and sets:

  IPAMGW_AVI_SCRIPT     path of the generated script
  IPAMGW_AVI_SERVER     host:port of the gateway (self-signed certificate)
  IPAMGW_AVI_USER       a gateway client name
  IPAMGW_AVI_PASSWORD   its password
  IPAMGW_AVI_CA         path of the gateway's certificate (PEM)

Standard library only.
"""

import importlib.util
import logging
import os
import socket
import unittest
import uuid

ENV_KEYS = ("IPAMGW_AVI_SCRIPT", "IPAMGW_AVI_SERVER", "IPAMGW_AVI_USER", "IPAMGW_AVI_PASSWORD",
            "IPAMGW_AVI_CA")
LOGGER = "avi-script-test"
SERVERS = "10.20.0.0/24"
SERVERS6 = "2001:db8:20::/64"
TINY = "10.40.0.0/29"
TINY_FREE = 5


def load_script():
    path = os.environ["IPAMGW_AVI_SCRIPT"]
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Capture(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@unittest.skipIf([k for k in ENV_KEYS if not os.environ.get(k)], "run from tests/api/avi_python.rs")
class AviScriptTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.s = load_script()
        cls.password = os.environ["IPAMGW_AVI_PASSWORD"]

    def setUp(self):
        self.capture = Capture()
        logger = logging.getLogger(LOGGER)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.capture)
        self.created = []

    def tearDown(self):
        for rid in self.created:
            try:
                self.s.DeleteIpamRecord(self.auth(), {"id": rid})
            except self.s.CustomIpamRecordNotFoundException:
                pass
        logging.getLogger(LOGGER).removeHandler(self.capture)
        for line in self.capture.lines:
            self.assertNotIn(self.password, line, "the password was logged")
            self.assertNotIn("wrong-pw-s3cret", line, "a password was logged")

    def auth(self, **overrides):
        params = {
            "server": os.environ["IPAMGW_AVI_SERVER"],
            "username": os.environ["IPAMGW_AVI_USER"],
            "password": self.password,
            "ca_cert": os.environ["IPAMGW_AVI_CA"],
            "logger_name": LOGGER,
        }
        params.update(overrides)
        return dict((k, v) for k, v in params.items() if v is not None)

    def new_id(self):
        rid = "vsvip-" + uuid.uuid4().hex
        self.created.append(rid)
        return rid

    def create(self, **record):
        record.setdefault("id", self.new_id())
        return record, self.s.CreateIpamRecord(self.auth(), record)

    # -- TestLogin -------------------------------------------------------------------------------

    def test_login_returns_true(self):
        self.assertIs(self.s.TestLogin(self.auth()), True)
        self.assertTrue(any("TestLogin" in line for line in self.capture.lines), self.capture.lines)

    def test_wrong_password_raises_the_authentication_exception_without_showing_it(self):
        with self.assertRaises(self.s.CustomIpamAuthenticationErrorException) as ctx:
            self.s.TestLogin(self.auth(password="wrong-pw-s3cret"))
        self.assertIn("refused the credentials", str(ctx.exception))
        self.assertNotIn("wrong-pw-s3cret", str(ctx.exception))

    def test_missing_parameters_raise_the_general_exception_naming_them(self):
        with self.assertRaises(self.s.CustomIpamGeneralException) as ctx:
            self.s.TestLogin({"server": os.environ["IPAMGW_AVI_SERVER"], "password": self.password,
                              "logger_name": LOGGER})
        self.assertIn("username", str(ctx.exception))
        self.assertNotIn(self.password, str(ctx.exception))

    def test_a_backend_parameter_naming_another_backend_is_refused(self):
        with self.assertRaises(self.s.CustomIpamGeneralException) as ctx:
            self.s.TestLogin(self.auth(backend="elsewhere"))
        self.assertIn("bound to backend", str(ctx.exception))

    # -- Transport -------------------------------------------------------------------------------

    def test_an_unreachable_gateway_raises_the_general_exception(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        with self.assertRaises(self.s.CustomIpamGeneralException) as ctx:
            self.s.TestLogin(self.auth(server="127.0.0.1:%d" % port, timeout="5"))
        self.assertIn("cannot reach ipam-gateway", str(ctx.exception))

    def test_an_untrusted_certificate_points_at_ca_cert(self):
        with self.assertRaises(self.s.CustomIpamGeneralException) as ctx:
            self.s.TestLogin(self.auth(ca_cert=None))
        self.assertIn("ca_cert", str(ctx.exception))

    def test_ca_cert_as_pem_text_and_verify_false_both_connect(self):
        with open(os.environ["IPAMGW_AVI_CA"]) as f:
            pem = f.read()
        self.assertIs(self.s.TestLogin(self.auth(ca_cert=pem)), True)
        self.assertIs(self.s.TestLogin(self.auth(ca_cert=None, verify="false")), True)
        self.assertTrue(any("verification is off" in line for line in self.capture.lines))

    # -- Networks --------------------------------------------------------------------------------

    def test_networks_are_dicts_in_tuple_order_per_ip_type(self):
        v4 = self.s.GetAvailableNetworksAndSubnets(self.auth(), "V4_ONLY")
        self.assertIsInstance(v4, list)
        for entry in v4:
            self.assertEqual(list(entry.keys())[:3], ["network", "v4_subnet", "v6_subnet"])
            self.assertIsNone(entry["v6_subnet"])
        self.assertIn(SERVERS, [e["v4_subnet"] for e in v4])
        v6 = self.s.GetAvailableNetworksAndSubnets(self.auth(), "V6_ONLY")
        self.assertEqual([e["v6_subnet"] for e in v6], [SERVERS6])
        both = self.s.GetAvailableNetworksAndSubnets(self.auth(), "V4_V6")
        self.assertEqual(tuple(both[0].values())[1:3], (SERVERS, SERVERS6))

    # -- Records ---------------------------------------------------------------------------------

    def test_preferred_ip_and_ip6_are_honoured(self):
        record, got = self.create(allocation_type="V4_V6", preferred_ip="10.20.0.91",
                                  preferred_ip6="2001:db8:20::91", nw_and_subnet_list=[])
        self.assertEqual(got["v4_ip"], "10.20.0.91")
        self.assertEqual(got["v6_ip"], "2001:db8:20::91")
        self.assertEqual(self.s.GetIpamRecord(self.auth(), {"id": record["id"]}), got)

    def test_dual_stack_from_tuples(self):
        both = self.s.GetAvailableNetworksAndSubnets(self.auth(), "V4_V6")
        record, got = self.create(allocation_type="V4_V6", fqdns=["vs.lab.example.com"],
                                  nw_and_subnet_list=[tuple(both[0].values())[:3]])
        self.assertEqual(got["v4_subnet"], SERVERS)
        self.assertEqual(got["v6_subnet"], SERVERS6)
        self.assertEqual(got["network"], both[0]["network"])
        self.assertEqual(self.s.GetIpamRecord(self.auth(), record), got)

    def test_create_is_idempotent(self):
        record, first = self.create(allocation_type="V4_ONLY", nw_and_subnet_list=[])
        self.assertEqual(self.s.CreateIpamRecord(self.auth(), record), first)
        self.assertEqual(self.s.GetIpamRecord(self.auth(), record), first)

    def test_update_v4_to_v6_with_tuples(self):
        old, created = self.create(allocation_type="V4_ONLY",
                                   nw_and_subnet_list=[("n", SERVERS, None)])
        new = dict(old, allocation_type="V6_ONLY", nw_and_subnet_list=[("n6", None, SERVERS6)])
        got = self.s.UpdateIpamRecord(self.auth(), new, old)
        self.assertNotIn("v4_ip", got)
        self.assertEqual(got["v6_subnet"], SERVERS6)
        self.assertEqual(self.s.GetIpamRecord(self.auth(), new), got)

    def test_missing_records_raise_record_not_found(self):
        with self.assertRaises(self.s.CustomIpamRecordNotFoundException):
            self.s.GetIpamRecord(self.auth(), {"id": "no-such-vsvip"})
        with self.assertRaises(self.s.CustomIpamRecordNotFoundException):
            self.s.DeleteIpamRecord(self.auth(), {"id": "no-such-vsvip", "fqdns": "a b"})
        with self.assertRaises(self.s.CustomIpamRecordNotFoundException):
            self.s.UpdateIpamRecord(self.auth(), {"id": "no-such-vsvip"}, {"id": "no-such-vsvip"})

    def test_delete_returns_true_then_the_record_is_gone(self):
        record, _ = self.create()
        self.assertIs(self.s.DeleteIpamRecord(self.auth(), record), True)
        with self.assertRaises(self.s.CustomIpamRecordNotFoundException):
            self.s.GetIpamRecord(self.auth(), record)

    def test_an_exhausted_subnet_raises_no_free_ip(self):
        for _ in range(TINY_FREE):
            self.create(allocation_type="V4_ONLY", nw_and_subnet_list=[("tiny", TINY, None)])
        with self.assertRaises(self.s.CustomIpamNoFreeIpException) as ctx:
            self.create(allocation_type="V4_ONLY", nw_and_subnet_list=[("tiny", TINY, None)])
        self.assertIn(TINY, str(ctx.exception))

    def test_changing_the_record_id_raises_not_implemented(self):
        record, _ = self.create()
        with self.assertRaises(self.s.CustomIpamNotImplementedException):
            self.s.UpdateIpamRecord(self.auth(), dict(record, id="another"), record)

    def test_bad_input_raises_the_general_exception_naming_the_field(self):
        with self.assertRaises(self.s.CustomIpamGeneralException) as ctx:
            self.create(allocation_type="V4_ONLY", preferred_ip="not-an-ip")
        self.assertIn("record_info.preferred_ip", str(ctx.exception))

    def test_the_password_is_never_logged_even_at_debug(self):
        record, _ = self.create(fqdns=["log.lab.example.com"])
        self.s.GetIpamRecord(self.auth(), record)
        self.s.UpdateIpamRecord(self.auth(), dict(record, fqdns=["log2.lab.example.com"]), record)
        self.s.DeleteIpamRecord(self.auth(), record)
        with self.assertRaises(self.s.CustomIpamRecordNotFoundException):
            self.s.DeleteIpamRecord(self.auth(), record)
        with self.assertRaises(self.s.CustomIpamAuthenticationErrorException):
            self.s.TestLogin(self.auth(password="wrong-pw-s3cret"))
        self.assertGreater(len(self.capture.lines), 5)
        # tearDown checks every line for both passwords.


if __name__ == "__main__":
    unittest.main()
