"""mpc_client.py: Python client of the mpcd daemon (same operations as libmpcclient).

Speaks mpc.v1 (proto/mpc.proto) over TCP or a Unix socket with protobuf's delimited framing
(a base-128 varint length before every message). Uses Debian's python3-protobuf and the
mpc_pb2 module the build generates (build/proto/mpc_pb2.py); it is found through, in order:
the pb2_path argument, $MPC_PB2_DIR (set by `meson test`), or build*/proto beside this
source tree.

    from mpc_client import Client
    with Client("tcp://127.0.0.1:7070", timeout=2.0) as c:
        welcome = c.hello("my-robot", rate_hz=50)
        action = c.step(observation, reset=True)
        print(action.action, action.plan_us)

Every call blocks until the reply arrives or `timeout` seconds pass. Failures raise
MpcError subclasses: ConnectError, Timeout, ConnectionLost, ProtocolError, DaemonError
(an Error reply: .code_name, .message and .retry_after_ms) and ReloadError. After a
Timeout the connection stays usable: the late reply is recognised by its id and dropped
when it arrives.

Admission control: a daemon that has no capacity left for the rate a Hello declares
refuses it with Overloaded (a DaemonError); the connection stays open, and hello() may be
called again on it after e.retry_after_ms milliseconds:

    try:
        welcome = c.hello("my-robot", rate_hz=50)
    except Overloaded as e:
        time.sleep(e.retry_after_ms / 1000)   # then try again, or give up
"""

import glob
import importlib.util
import math
import os
import socket
import sys
import time

DEFAULT_ADDRESS = "tcp://127.0.0.1:7070"
DEFAULT_TIMEOUT = 5.0
MAX_FRAME = 1 << 20


class MpcError(Exception):
    """Base of every client failure."""


class ConnectError(MpcError):
    """The daemon could not be reached (or the address is malformed)."""


class Timeout(MpcError):
    """No reply within the timeout; the connection stays usable."""


class ConnectionLost(MpcError):
    """The connection closed or broke; connect again."""


class ProtocolError(MpcError):
    """The daemon sent something that is not the expected reply; connection unusable."""


class DaemonError(MpcError):
    """The daemon answered with an Error reply: .code (Error.Code), .code_name, .message
    and .retry_after_ms (the daemon's hint of when trying again may succeed; 0: none)."""

    def __init__(self, code, code_name, message, retry_after_ms=0):
        text = "daemon error %s: %s" % (code_name, message)
        if retry_after_ms:
            text += " (retry after %d ms)" % retry_after_ms
        super().__init__(text)
        self.code = code
        self.code_name = code_name
        self.message = message
        self.retry_after_ms = retry_after_ms


class Overloaded(DaemonError):
    """The daemon answered OVERLOADED: at Hello, admitting the session would leave the
    admitted ones below their minimum plan (the connection stays open and hello() may be
    sent again); on other requests, too many are queued on this connection. Try again
    after .retry_after_ms milliseconds (0: no hint)."""


class ReloadError(MpcError):
    """The daemon kept its old model."""

    def __init__(self, message, reply=None):
        super().__init__(message)
        self.reply = reply


def load_pb2(pb2_path=None):
    """Imports the generated mpc_pb2 module from pb2_path (a directory or the .py file)."""
    candidates = []
    if pb2_path:
        candidates.append(pb2_path)
    if os.environ.get("MPC_PB2_DIR"):
        candidates.append(os.environ["MPC_PB2_DIR"])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates += sorted(glob.glob(os.path.join(root, "build*", "proto")))
    for cand in candidates:
        path = os.path.join(cand, "mpc_pb2.py") if os.path.isdir(cand) else cand
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("mpc_pb2", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules.setdefault("mpc_pb2", module)
            return module
    raise ImportError("mpc_pb2.py not found (looked in %s); build the project or set "
                      "MPC_PB2_DIR to build/proto" % (", ".join(candidates) or "nothing"))


def parse_address(text):
    """('tcp', host, port) or ('unix', path, None); raises ConnectError when malformed."""
    text = text or DEFAULT_ADDRESS

    def bad(why):
        return ConnectError("bad address '%s': %s (expected tcp://HOST:PORT or unix:PATH)"
                            % (text, why))

    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise bad("empty socket path")
        return ("unix", path, None)
    if not text.startswith("tcp://"):
        raise bad("unknown scheme")
    rest = text[6:]
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise bad("missing ']' after IPv6 address")
        host, after = rest[1:end], rest[end + 1:]
        if not after.startswith(":"):
            raise bad("missing ':PORT' after ']'")
        port = after[1:]
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            raise bad("missing ':PORT'")
        if ":" in host:
            raise bad("IPv6 addresses need brackets: tcp://[::1]:7070")
    if not host:
        raise bad("empty host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad("port must be a number from 1 to 65535")
    return ("tcp", host, int(port))


def encode_varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_frame(buf):
    """(payload, bytes used) of the first complete frame in buf, or (None, 0)."""
    length, shift = 0, 0
    for pos in range(min(len(buf), 10)):
        byte = buf[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if length > MAX_FRAME:
                raise ProtocolError("frame of %d bytes is larger than %d" % (length, MAX_FRAME))
            end = pos + 1 + length
            if len(buf) < end:
                return None, 0
            return bytes(buf[pos + 1:end]), end
    if len(buf) >= 10:
        raise ProtocolError("malformed length varint")
    return None, 0


def encode_frame(message):
    """The delimited frame of a protobuf message: its varint length, then its bytes."""
    payload = message.SerializeToString()
    return encode_varint(len(payload)) + payload


def read_messages(sock, message_class, buf=None):
    """Yields a message_class parsed from each frame read from a blocking socket, until
    the peer closes it. Bytes received past the last frame yielded stay in buf (a
    bytearray the caller may pass to look at them). Used by fake daemons and raw-socket
    tests; Client has its own loop for timeouts and reply ids."""
    buf = bytearray() if buf is None else buf
    while True:
        payload, used = split_frame(buf)
        if payload is not None:
            del buf[:used]
            message = message_class()
            message.ParseFromString(payload)
            yield message
            continue
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk


class Client:
    """One connection to mpcd. Not thread-safe: use one per thread."""

    def __init__(self, address=None, timeout=DEFAULT_TIMEOUT, pb2_path=None, connect=True):
        self.pb = load_pb2(pb2_path)
        self.address = address or DEFAULT_ADDRESS
        self.timeout = timeout
        self.sock = None
        self.broken = False
        self.next_id = 1
        self.buf = bytearray()
        self.welcome = None
        if connect:
            self.connect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self, address=None):
        self.close()
        if address:
            self.address = address
        kind, host, port = parse_address(self.address)
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(host)
            else:
                sock = socket.create_connection((host, port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise ConnectError("cannot connect to %s: %s" % (self.address,
                                                            e.strerror or e)) from None
        self.sock = sock
        self.broken = False
        self.buf = bytearray()

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.welcome = None

    def _lost(self, exc_type, why):
        self.broken = True
        return exc_type("%s; the connection is no longer usable" % why)

    def _recv_reply(self, want_id, deadline):
        while True:
            payload, used = split_frame(self.buf)
            if payload is not None:
                del self.buf[:used]
                rep = self.pb.Reply()
                try:
                    rep.ParseFromString(payload)
                except Exception:
                    raise self._lost(ProtocolError, "the daemon sent a frame that is not a "
                                                    "valid mpc.v1 Reply") from None
                if rep.WhichOneof("body") is None:
                    raise self._lost(ProtocolError, "the daemon sent a Reply without a body")
                undecodable = rep.WhichOneof("body") == "error" and rep.id == 0
                if rep.id < want_id and not undecodable:
                    continue  # late answer to a call that timed out
                if rep.id > want_id:
                    raise self._lost(ProtocolError, "unexpected reply id %d while waiting "
                                                    "for %d" % (rep.id, want_id))
                return rep
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("timed out after %g s waiting for the daemon's reply"
                              % self.timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise self._lost(ConnectionLost, "receiving failed: %s" % e) from None
            if not chunk:
                if self.buf:
                    raise self._lost(ConnectionLost, "the daemon closed the connection in "
                                     "the middle of a reply (%d bytes received)" % len(self.buf))
                raise self._lost(ConnectionLost, "the daemon closed the connection")
            self.buf += chunk

    def _call(self, want, **body):
        """Sends a Request with one body field set; returns the reply's `want` message."""
        if self.sock is None:
            raise ConnectionLost("not connected")
        if self.broken:
            raise ConnectionLost("the connection is broken after an earlier error; "
                                 "connect again")
        req = self.pb.Request(id=self.next_id, **body)
        self.next_id += 1
        deadline = time.monotonic() + self.timeout
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(encode_frame(req))
        except socket.timeout:
            raise self._lost(Timeout, "timed out sending the request") from None
        except OSError as e:
            raise self._lost(ConnectionLost, "sending failed: %s" % e) from None
        rep = self._recv_reply(req.id, deadline)
        kind = rep.WhichOneof("body")
        if kind == "error":
            err = rep.error
            name = self.pb.Error.Code.Name(err.code) \
                if err.code in self.pb.Error.Code.values() else "UNKNOWN"
            cls = Overloaded if name == "OVERLOADED" else DaemonError
            raise cls(err.code, name, err.message, getattr(err, "retry_after_ms", 0))
        if kind != want:
            raise ProtocolError("the daemon answered with %s, expected %s" % (kind, want))
        return getattr(rep, want)

    def hello(self, client_name="", auth_token="", observation_size=0, action_size=0,
              rate_hz=0.0):
        """Opens a session; returns the Welcome (also kept as self.welcome).

        rate_hz: steps per second this client will send, for the daemon's admission
        control (0: one per control period of the model; the daemon accepts 0 .. 1000).
        The Welcome's rate_hz and min_iterations say what the session was admitted for.
        Raises Overloaded (with .retry_after_ms) when the daemon has no capacity for it;
        the connection stays usable and hello() may be called again later."""
        fields = dict(client_name=client_name, auth_token=auth_token,
                      observation_size=observation_size, action_size=action_size)
        if rate_hz:  # unset when 0, so an mpc_pb2 built before rate_hz still works
            fields["rate_hz"] = float(rate_hz)
        msg = self.pb.Hello(**fields)
        self.welcome = self._call("welcome", hello=msg)
        return self.welcome

    def step(self, observation, seq=0, reward=0.0, reset=False, deadline_us=0,
             exploration_noise=0.0):
        """Sends one observation; returns the Action (action, iterations, plan_us, ...)."""
        obs = [float(x) for x in observation]
        if self.welcome is not None and len(obs) != self.welcome.observation_size:
            raise ValueError("observation has %d floats, the session expects %d"
                             % (len(obs), self.welcome.observation_size))
        if not all(math.isfinite(x) for x in obs):
            raise ValueError("observation contains NaN or infinity")
        msg = self.pb.Step(seq=seq, observation=obs, reward=reward, reset=reset,
                           deadline_us=deadline_us, exploration_noise=exploration_noise)
        action = self._call("action", step=msg)
        if action.seq != seq:
            raise ProtocolError("Action for seq %d while waiting for %d" % (action.seq, seq))
        return action

    def reset(self):
        self._call("ack", reset=self.pb.Reset())

    def status(self):
        """Returns the StatusReply (its .json holds the daemon's full /status document)."""
        return self._call("status", status=self.pb.Status())

    def reload(self, path=""):
        """Hot-swaps the model; raises ReloadError when the daemon keeps the old one."""
        try:
            reply = self._call("reload", reload=self.pb.Reload(path=path or ""))
        except DaemonError as e:
            if e.code_name == "RELOAD_FAILED":
                raise ReloadError(str(e)) from None
            raise
        if not reply.ok:
            raise ReloadError("reload refused, still serving model version %d: %s"
                              % (reply.model_version, reply.message), reply)
        return reply
