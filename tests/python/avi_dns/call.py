"""Calls one function of the generated Avi DNS script, as the controller would, and prints the
outcome as one JSON line: {"result": ...} or {"exception": "<class>", "message": "..."}.

usage: python3 call.py <function> '<JSON list of the arguments before auth_params>'
The script is $IPAMGW_AVI_DNS_SCRIPT; auth_params come from $IPAMGW_AVI_SERVER, $IPAMGW_AVI_USER,
$IPAMGW_AVI_PASSWORD and $IPAMGW_AVI_CA (the gateway's certificate).
"""

import importlib.util
import json
import os
import sys


def main():
    path = os.environ["IPAMGW_AVI_DNS_SCRIPT"]
    spec = importlib.util.spec_from_file_location("ipam_gateway_avi_dns", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    auth_params = {
        "server": os.environ["IPAMGW_AVI_SERVER"],
        "username": os.environ["IPAMGW_AVI_USER"],
        "password": os.environ["IPAMGW_AVI_PASSWORD"],
        "ca_cert": os.environ["IPAMGW_AVI_CA"],
        "logger_name": "avi-dns-test",
    }
    function = getattr(module, sys.argv[1])
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
    try:
        result = function(*args, auth_params)
    except Exception as e:  # the five CustomDns... classes, reported by name
        print(json.dumps({"exception": type(e).__name__, "message": str(e)}))
        return
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
