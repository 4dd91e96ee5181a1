"""The generated vRA actions, run under python3 the way ABX runs them, against a live gateway.

Run by `cargo test` (tests/api/vra_python.rs); standalone it needs the IPAMGW_VRA_* variables
described in vra_harness.py.
"""

import ast
import ipaddress
import os
import socket
import ssl
import struct
import unittest
import zlib

import vra_harness as h

PACKAGE = None
OPERATIONS = {
    "allocate_ip": "allocate-ip",
    "deallocate_ip": "deallocate-ip",
    "validate_endpoint": "validate-endpoint",
    "update_record": "update-record",
    "get_ip_ranges": "get-ip-ranges",
    "allocate_ip_range": "allocate-ip-range",
    "deallocate_ip_range": "deallocate-ip-range",
    "get_ip_blocks": "get-ip-blocks",
}


def setUpModule():
    global PACKAGE
    missing = h.missing_env()
    if missing:
        raise unittest.SkipTest("run through `cargo test` (missing %s)" % ", ".join(missing))
    PACKAGE = h.Package(h.env("IPAMGW_VRA_PACKAGE"))


def tearDownModule():
    if PACKAGE is not None:
        PACKAGE.close()


def trusted():
    """The certificate as vRA stores it once the user accepted it."""
    return h.gateway_certificate()


class PackageLayout(unittest.TestCase):
    def test_every_operation_has_a_descriptor_and_code(self):
        self.assertEqual(
            sorted(PACKAGE.top_names),
            sorted(["registration.yaml", "endpoint-schema.json", "logo.png", "CHANGELOG.md", "bundle.zip"]),
        )
        for stem, op in OPERATIONS.items():
            self.assertIn(stem + ".abx", PACKAGE.bundle_names)
            self.assertIn(stem + ".zip", PACKAGE.bundle_names)
            with open(os.path.join(PACKAGE.actions[stem], "source.py")) as f:
                self.assertIn('run(context, inputs, "%s")' % op, f.read())
        registration = PACKAGE.read("registration.yaml").decode("utf-8")
        self.assertIn("supportsOnDemandNetworks: true", registration)

    def test_the_code_parses_as_python_3_7(self):
        for stem, directory in PACKAGE.actions.items():
            for name in ("source.py", "ipamgw_vra.py"):
                with open(os.path.join(directory, name)) as f:
                    ast.parse(f.read(), filename=stem + "/" + name, feature_version=(3, 7))

    def test_the_logo_is_a_valid_png(self):
        png = PACKAGE.read("logo.png")
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        at, chunks = 8, {}
        while at < len(png):
            (length,) = struct.unpack(">I", png[at: at + 4])
            kind, data = png[at + 4: at + 8], png[at + 8: at + 8 + length]
            (crc,) = struct.unpack(">I", png[at + 8 + length: at + 12 + length])
            self.assertEqual(zlib.crc32(kind + data) & 0xFFFFFFFF, crc, kind)
            chunks[kind] = data
            at += 12 + length
        width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
        self.assertEqual((width, height, depth, color), (64, 64, 8, 6))
        raw = zlib.decompress(chunks[b"IDAT"])
        self.assertEqual(len(raw), height * (1 + width * 4))


class CertificateAndCredentials(unittest.TestCase):
    def setUp(self):
        self.values = h.placeholder_values()

    def test_self_signed_certificate_prompts_then_validates_once_accepted(self):
        inputs = h.fixture("validate-endpoint", self.values)
        result, _ = h.run_action(PACKAGE, "validate_endpoint", inputs)
        self.assertEqual(result["error"]["errorCode"], "3002", result)
        self.assertIn("certificate verify failed", result["error"]["errorMessage"])
        pem = result["certificateInfo"]["certificate"]
        self.assertTrue(pem.startswith("-----BEGIN CERTIFICATE-----"), pem)
        self.assertEqual(ssl.PEM_cert_to_DER_cert(pem), ssl.PEM_cert_to_DER_cert(h.gateway_certificate()))

        # The user clicks ACCEPT: vRA stores the PEM and validates again.
        inputs["endpointProperties"]["certificate"] = pem
        result, _ = h.run_action(PACKAGE, "validate_endpoint", inputs)
        self.assertNotIn("error", result)
        self.assertTrue(result["message"].startswith("Validated successfully"), result)
        self.assertEqual(result["statusCode"], "200")

    def test_the_certificate_is_fetched_by_hand_on_pythons_without_a_timeout_parameter(self):
        helper = PACKAGE.helper()
        original = helper.ssl.get_server_certificate

        def old_signature(addr, ssl_version=None, ca_certs=None):
            raise TypeError("get_server_certificate() got an unexpected keyword argument 'timeout'")

        helper.ssl.get_server_certificate = old_signature
        try:
            host, port = helper.split_host_port(h.env("IPAMGW_VRA_HOST"))
            pem = helper.fetch_certificate(host, port)
        finally:
            helper.ssl.get_server_certificate = original
        self.assertEqual(ssl.PEM_cert_to_DER_cert(pem), ssl.PEM_cert_to_DER_cert(h.gateway_certificate()))

    def test_other_actions_raise_until_the_certificate_is_accepted(self):
        inputs = h.fixture("get-ip-ranges", self.values)
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "get_ip_ranges", inputs)
        self.assertIn("not trusted", str(caught.exception))

    def test_wrong_password_raises_and_never_shows_the_password(self):
        secret = "Wr0ng-Pa55word-xyz"
        inputs = h.fixture("validate-endpoint", self.values, certificate=trusted())
        context = h.FakeContext(password=secret)
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "validate_endpoint", inputs, context=context)
        message = str(caught.exception)
        self.assertIn("refused the credentials", message)
        self.assertIn("'%s'" % h.env("IPAMGW_VRA_USER"), message)
        self.assertNotIn(secret, message)
        self.assertNotIn(secret, caught.exception.action_log)

    def test_credentials_come_from_the_vra_credential_store(self):
        inputs = h.fixture("validate-endpoint", self.values, certificate=trusted())
        context = h.FakeContext(as_bytes=True)  # vRA 8.0 handed bytes
        result, log = h.run_action(PACKAGE, "validate_endpoint", inputs, context=context)
        self.assertTrue(result["message"].startswith("Validated successfully"))
        self.assertEqual(context.calls, [(h.CREDENTIALS_LINK, "GET", "")])
        self.assertNotIn(h.env("IPAMGW_VRA_PASSWORD"), log)

        refused = h.FakeContext(status=403)
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "validate_endpoint", inputs, context=refused)
        self.assertIn("cannot read the endpoint credentials", str(caught.exception))

    def test_host_names_with_ports_and_unreachable_gateways(self):
        helper = PACKAGE.helper()
        self.assertEqual(helper.split_host_port("gw.example.com"), ("gw.example.com", 443))
        self.assertEqual(helper.split_host_port(" gw:8443 "), ("gw", 8443))
        self.assertEqual(helper.split_host_port("[2001:db8::1]:8443"), ("2001:db8::1", 8443))
        self.assertEqual(helper.split_host_port("2001:db8::1"), ("2001:db8::1", 443))
        self.assertEqual(helper.split_host_port("https://gw:9443/ui"), ("gw", 9443))
        for bad in ("", "gw:0", "gw:http", "[::1"):
            with self.assertRaises(Exception):
                helper.split_host_port(bad)

        values = dict(self.values, host="127.0.0.1:1")
        inputs = h.fixture("validate-endpoint", values, certificate=trusted())
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "validate_endpoint", inputs)
        self.assertIn("cannot reach ipam-gateway at 127.0.0.1:1", str(caught.exception))

    def test_a_host_name_the_certificate_does_not_name_is_explained(self):
        # vRA registered the gateway under a name its certificate lacks: resolve such a name to
        # the loopback gateway for this test only, and expect the explanation, not a bare error.
        _, port = PACKAGE.helper().split_host_port(h.env("IPAMGW_VRA_HOST"))
        real = socket.getaddrinfo

        def resolve(host, *args, **kwargs):
            return real("127.0.0.1" if host == "ipam-gw.test" else host, *args, **kwargs)

        values = dict(self.values, host="ipam-gw.test:%d" % port)
        inputs = h.fixture("validate-endpoint", values, certificate=trusted())
        socket.getaddrinfo = resolve
        try:
            with self.assertRaises(Exception) as caught:
                h.run_action(PACKAGE, "validate_endpoint", inputs)
        finally:
            socket.getaddrinfo = real
        message = str(caught.exception)
        self.assertIn("does not name 'ipam-gw.test'", message)
        self.assertIn("server.tls.hostnames", message)


class Operations(unittest.TestCase):
    def setUp(self):
        self.values = h.placeholder_values()
        self.cert = trusted()

    def inputs(self, name, **extra):
        values = dict(self.values)
        values.update(extra)
        return h.fixture(name, values, certificate=self.cert)

    def run_ok(self, stem, inputs):
        result, log = h.run_action(PACKAGE, stem, inputs)
        self.assertNotIn(h.env("IPAMGW_VRA_PASSWORD"), log)
        return result

    def test_get_ip_ranges_pages_through_every_range_once(self):
        everything = self.run_ok("get_ip_ranges", self.inputs("get-ip-ranges"))
        self.assertNotIn("nextPageToken", everything)
        expected = [r["id"] for r in everything["ipRanges"]]
        self.assertGreaterEqual(len(expected), 5)

        inputs = self.inputs("get-ip-ranges")
        inputs["pagingAndSorting"]["maxResults"] = 2
        seen, pages = [], 0
        while True:
            page = self.run_ok("get_ip_ranges", inputs)
            pages += 1
            self.assertLessEqual(len(page["ipRanges"]), 2)
            for r in page["ipRanges"]:
                for key in ("id", "name", "startIPAddress", "endIPAddress", "ipVersion", "subnetPrefixLength"):
                    self.assertTrue(r.get(key), "%s missing in %s" % (key, r))
            seen.extend(r["id"] for r in page["ipRanges"])
            if "nextPageToken" not in page:
                break
            inputs["pagingAndSorting"]["pageToken"] = page["nextPageToken"]
            self.assertLess(pages, 50, "paging does not end")
        self.assertEqual(seen, expected)
        self.assertEqual(pages, (len(expected) + 1) // 2)

    def assert_describes(self, item, net, what):
        """An IpRange or AllocationResult carries the lab network's settings (contract p.11-15)."""
        cidr = ipaddress.ip_network(net["cidr"])
        self.assertEqual(item["subnetPrefixLength"], str(cidr.prefixlen), what)
        self.assertEqual(item["ipVersion"], "IPv%d" % cidr.version, what)
        self.assertEqual(item["dnsServerAddresses"], net["dns_servers"], what)
        self.assertEqual(item.get("domain"), net["dns_domain"], what)
        self.assertEqual(item["dnsSearchDomains"], net["dns_search_domains"], what)

    def test_get_ip_ranges_describe_the_lab_networks(self):
        ranges = self.run_ok("get_ip_ranges", self.inputs("get-ip-ranges"))["ipRanges"]
        by_name = {r["name"]: r for r in ranges}
        for net in h.lab()["networks"]:
            name = net["name"]
            self.assertIn(name, by_name, "range %s listed" % name)
            r = by_name[name]
            self.assertEqual(r["id"], self.values["range:" + name])
            self.assert_describes(r, net, name)
            cidr = ipaddress.ip_network(net["cidr"])
            self.assertEqual(r["properties"]["cidr"], net["cidr"], name)
            self.assertEqual(r["addressSpaceId"], net["address_space"], name)
            self.assertEqual(r.get("gatewayAddress"), net["gateway"], name)
            if net["vlan"] is not None:
                self.assertEqual(r["properties"].get("vlan"), str(net["vlan"]), name)
            # The range limits are the backend's own (the embedded prod-servers narrows them;
            # phpIPAM cannot): the contract only needs them inside the subnet, in order.
            start = ipaddress.ip_address(r["startIPAddress"])
            end = ipaddress.ip_address(r["endIPAddress"])
            self.assertIn(start, cidr, name)
            self.assertIn(end, cidr, name)
            self.assertLessEqual(start, end, name)

    def test_two_nic_allocation(self):
        rid = self.values["resource"]
        result = self.run_ok("allocate_ip", self.inputs("allocate-ip-2nic"))
        by_id = {a["ipAllocationId"]: a for a in result["ipAllocations"]}
        self.assertEqual(sorted(by_id), ["nic0-alloc", "nic1-alloc"])
        nic0, nic1 = by_id["nic0-alloc"], by_id["nic1-alloc"]
        self.assertEqual(nic0["ipRangeId"], self.values["range:lab-servers"])
        self.assertEqual(nic1["ipRangeId"], self.values["range:lab-dmz"])
        self.assertEqual(nic0["gatewayAddresses"], ["10.20.0.1"])
        self.assertEqual(nic1["gatewayAddresses"], ["10.30.0.1"])
        self.assert_describes(nic0, h.lab_network("lab-servers"), "nic0")
        self.assert_describes(nic1, h.lab_network("lab-dmz"), "nic1")
        for nic, net in ((nic0, "lab-servers"), (nic1, "lab-dmz")):
            (address,) = nic["ipAddresses"]
            self.assertIn(ipaddress.ip_address(address), ipaddress.ip_network(h.lab_network(net)["cidr"]))
            self.assertNotEqual(address, h.lab_network(net)["gateway"])
        self.assertEqual(h.held_by("vra:%s/nic0" % rid), nic0["ipAddresses"])
        self.assertEqual(h.held_by("vra:%s/nic1" % rid), nic1["ipAddresses"])
        # A retry gets the same addresses.
        self.assertEqual(self.run_ok("allocate_ip", self.inputs("allocate-ip-2nic")), result)

    def test_rollback_on_exhaustion_leaves_nothing_allocated(self):
        rid = self.values["resource"]
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "allocate_ip", self.inputs("allocate-ip-exhaust"))
        message = str(caught.exception)
        for part in ('ipAllocations[1] (id "too-big", NIC 1)', "lab-tiny", "no free address", "released"):
            self.assertIn(part, message)
        self.assertEqual(h.held_by("vra:%s/nic0" % rid), [])
        for i in range(8):
            self.assertEqual(h.held_by("vra:%s/nic1/%d" % (rid, i)), [])

    def test_deallocate_twice_succeeds(self):
        result = self.run_ok("allocate_ip", self.inputs("allocate-ip"))
        address = result["ipAllocations"][0]["ipAddresses"][0]
        inputs = self.inputs("deallocate-ip", address=address)
        first = self.run_ok("deallocate_ip", inputs)
        self.assertEqual(first["ipDeallocations"][0]["message"], "Success")
        self.assertIsNone(h.allocation_at(address))
        second = self.run_ok("deallocate_ip", inputs)
        self.assertEqual(
            second["ipDeallocations"][0]["ipDeallocationId"], "111bb2f0-02fd-4983-94d2-8ac11768150f"
        )

    def test_update_record_writes_the_mac(self):
        result = self.run_ok("allocate_ip", self.inputs("allocate-ip"))
        address = result["ipAllocations"][0]["ipAddresses"][0]
        out = self.run_ok("update_record", self.inputs("update-record", address=address))
        self.assertEqual(out, {"updateResults": ["Success"]})
        record = h.allocation_at(address)
        self.assertEqual(record["mac"], "00:50:56:aa:bb:cc")
        self.assertEqual(record["hostname"], "bond-006")
        self.run_ok("deallocate_ip", self.inputs("deallocate-ip", address=address))

    def test_on_demand_network(self):
        lab_block = h.lab()["block"]
        blocks = self.run_ok("get_ip_blocks", self.inputs("get-ip-blocks"))
        self.assertEqual([b["name"] for b in blocks["ipBlocks"]], [lab_block["name"]])
        (block,) = blocks["ipBlocks"]
        self.assertEqual(block["ipBlockCIDR"], lab_block["cidr"])
        self.assertEqual(block["addressSpaceId"], lab_block["address_space"])
        self.assertEqual(block["dnsServerAddresses"], lab_block["dns_servers"])
        self.assertEqual(block.get("domain"), lab_block["dns_domain"])
        network = self.run_ok("allocate_ip_range", self.inputs("allocate-ip-range"))["ipRange"]
        self.assertEqual(network["subnetPrefixLength"], "28")
        carved = ipaddress.ip_network(network["properties"]["cidr"])
        self.assertTrue(carved.subnet_of(ipaddress.ip_network(lab_block["cidr"])), network)
        # The carved network inherits the block's DNS settings (the fixture asks for none).
        self.assertEqual(network["dnsServerAddresses"], lab_block["dns_servers"])
        self.assertEqual(network.get("domain"), lab_block["dns_domain"])

        machine = h.new_resource()
        alloc = self.inputs("allocate-ip", resource=machine)
        alloc["ipAllocations"][0]["ipRangeIds"] = [network["id"]]
        allocation = self.run_ok("allocate_ip", alloc)["ipAllocations"][0]
        address = allocation["ipAddresses"][0]
        self.assertEqual(address, network["startIPAddress"])
        # ... and a machine placed on it gets the settings Allocate IP Range reported.
        self.assertEqual(allocation["gatewayAddresses"], [network["gatewayAddress"]])
        self.assertEqual(allocation["dnsServerAddresses"], network["dnsServerAddresses"])
        self.assertEqual(allocation.get("domain"), network.get("domain"))
        listed = {
            r["id"]: r for r in self.run_ok("get_ip_ranges", self.inputs("get-ip-ranges"))["ipRanges"]
        }
        self.assertIn(network["id"], listed)
        self.assertEqual(listed[network["id"]].get("domain"), network.get("domain"))
        self.assertEqual(listed[network["id"]]["dnsServerAddresses"], network["dnsServerAddresses"])
        for key in ("startIPAddress", "endIPAddress", "gatewayAddress", "subnetPrefixLength"):
            self.assertEqual(listed[network["id"]].get(key), network.get(key), key)
        dealloc = self.inputs("deallocate-ip", resource=machine, address=address)
        dealloc["ipDeallocations"][0]["ipRangeId"] = network["id"]
        self.run_ok("deallocate_ip", dealloc)

        release = self.inputs("deallocate-ip-range", range_id=network["id"])
        self.assertIn(network["id"], self.run_ok("deallocate_ip_range", release)["message"])
        self.run_ok("deallocate_ip_range", release)  # already gone: still a success
        ranges = self.run_ok("get_ip_ranges", self.inputs("get-ip-ranges"))
        self.assertNotIn(network["id"], [r["id"] for r in ranges["ipRanges"]])

    def test_bad_inputs_raise_naming_the_field(self):
        inputs = self.inputs("allocate-ip")
        inputs["ipAllocations"][0]["ipRangeIds"] = ["range/ZG5z:10.10.24.21/10.10.24.22/mdzh-net"]
        with self.assertRaises(Exception) as caught:
            h.run_action(PACKAGE, "allocate_ip", inputs)
        message = str(caught.exception)
        self.assertIn("ipAllocations[0].ipRangeIds[0]", message)
        self.assertIn("(HTTP 400)", message)


if __name__ == "__main__":
    unittest.main()
