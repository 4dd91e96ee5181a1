# ------------------------------------------------------------------------------------------------
# Plumbing

def _logger(auth_params):
    name = ""
    if isinstance(auth_params, dict):
        name = auth_params.get("logger_name", "") or ""
    return logging.getLogger(name)


def _param(auth_params, key):
    value = auth_params.get(key)
    if value is None:
        return ""
    return str(value).strip()


def _split_server(text):
    """'host', 'host:port', '[v6]:port', a bare IPv6 address; a scheme or path is ignored."""
    value = text
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0]
    port_text = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise @EXC@GeneralException("script parameter server '%s' has an unclosed '['" % text)
        host = value[1:end]
        rest = value[end + 1:]
        if rest.startswith(":"):
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host = value
    if not host:
        raise @EXC@GeneralException("script parameter server '%s' has no host" % text)
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if port < 1 or port > 65535:
        raise @EXC@GeneralException("script parameter server '%s' has an invalid port" % text)
    return host, port


def _where(host, port):
    shown = "[%s]" % host if ":" in host else host
    return shown if port == DEFAULT_PORT else "%s:%d" % (shown, port)


def _falsy(text):
    return text.lower() in ("false", "no", "0", "off", "none")


def _tls_context(auth_params, log):
    verify = _param(auth_params, "verify")
    if verify and _falsy(verify):
        log.warning("ipam-gateway: certificate verification is off (script parameter verify=%s)", verify)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    ca = _param(auth_params, "ca_cert")
    if not ca:
        return ssl.create_default_context()
    try:
        if "-----BEGIN" in ca:
            context = ssl.create_default_context(cadata=ca)
        elif os.path.isfile(ca):
            context = ssl.create_default_context(cafile=ca)
        else:
            raise @EXC@GeneralException(
                "script parameter ca_cert is neither PEM text nor the path of a file on the controller")
    except (ssl.SSLError, ValueError, OSError) as e:
        raise @EXC@GeneralException("script parameter ca_cert is not a usable PEM certificate: %s" % e)
    context.verify_flags |= PARTIAL_CHAIN
    return context


def _settings(function, auth_params):
    if not isinstance(auth_params, dict):
        raise @EXC@GeneralException("F[%s] auth_params is not a dict" % function)
    missing = [k for k in ("server", "username", "password") if not _param(auth_params, k)]
    if missing:
        raise @EXC@GeneralException(
            "F[%s] all credentials are not provided, missing script parameters[%s]"
            % (function, ", ".join(missing)))
    host, port = _split_server(_param(auth_params, "server"))
    timeout_text = _param(auth_params, "timeout")
    timeout = DEFAULT_TIMEOUT
    if timeout_text:
        try:
            timeout = float(timeout_text)
        except ValueError:
            raise @EXC@GeneralException("F[%s] script parameter timeout '%s' is not a number"
                                             % (function, timeout_text))
    return host, port, timeout


def _call(auth_params, function, path, arguments):
    """Posts one function's arguments to the gateway and returns its answer (or raises)."""
    log = _logger(auth_params)
    host, port, timeout = _settings(function, auth_params)
    where = _where(host, port)
    username = _param(auth_params, "username")
    password = _param(auth_params, "password")
    # Only non-secret parameters travel in the body; credentials go as HTTP Basic auth.
    body = dict(arguments)
    body["auth_params"] = {}
    backend = _param(auth_params, "backend")
    if backend:
        body["auth_params"]["backend"] = backend
    url = "https://%s%s%s" % (where, API_PREFIX, path)
    token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        method="POST",
        headers={
            "Authorization": "Basic " + token,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "@USER_AGENT@/%s" % GATEWAY_VERSION,
        },
    )
    log.debug("F[%s] POST %s (user %s)", function, url, username)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_tls_context(auth_params, log)))
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        raise _http_error(function, e, username, where, log)
    except urllib.error.URLError as e:
        raise _unreachable(function, where, e.reason, timeout, log)
    except (socket.timeout, OSError, ssl.SSLError) as e:
        raise _unreachable(function, where, e, timeout, log)
    try:
        result = json.loads(raw.decode("utf-8"))
    except ValueError:
        log.error("F[%s] the answer of ipam-gateway at %s is not JSON", function, where)
        raise @EXC@GeneralException("F[%s] the answer of ipam-gateway at %s is not JSON" % (function, where))
    log.info("F[%s] done: %s", function, result)
    return result


def _unreachable(function, where, reason, timeout, log):
    if isinstance(reason, ssl.SSLCertVerificationError):
        message = ("F[%s] the certificate of ipam-gateway at %s is not trusted (%s): set the script "
                   "parameter ca_cert to the gateway's CA or certificate"
                   % (function, where, getattr(reason, "verify_message", reason)))
    elif isinstance(reason, socket.timeout):
        message = "F[%s] ipam-gateway at %s did not answer within %ss" % (function, where, timeout)
    else:
        message = "F[%s] cannot reach ipam-gateway at %s: %s" % (function, where, reason)
    log.error(message)
    return @EXC@GeneralException(message)


def _http_error(function, error, username, where, log):
    """The exception the gateway names, with its message (it says what failed and why)."""
    exception, message = None, None
    try:
        body = json.loads(error.read().decode("utf-8"))
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            exception = body["error"].get("exception")
            message = body["error"].get("message")
    except (ValueError, OSError, AttributeError):
        pass
    if error.code in (401, 403):
        text = ("F[%s] ipam-gateway at %s refused the credentials of user '%s': %s"
                % (function, where, username, message or "invalid username or password"))
        log.error(text)
        return @EXC@AuthenticationErrorException(text)
    cls = EXCEPTIONS.get(exception, @EXC@GeneralException)
    if message and message.startswith(function + ": "):
        message = message[len(function) + 2:]
    if message:
        text = "F[%s] %s" % (function, message)
    else:
        text = "F[%s] ipam-gateway at %s answered HTTP %d %s" % (function, where, error.code, error.reason)
    if cls is @EXC@RecordNotFoundException:
        log.info("%s (%s)", text, cls.__name__)
    else:
        log.error("%s (%s)", text, cls.__name__)
    return cls(text)
