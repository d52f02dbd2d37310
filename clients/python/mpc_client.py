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
        print(action.action, action.plan_us, len(action.plan))

Every call but step_send() and poll_action() (below) blocks until the reply arrives or
`timeout` seconds pass. Failures raise MpcError subclasses: ConnectError, Timeout,
ConnectionLost (ResumeFailed when a dropped session could not be resumed: below),
ProtocolError, DaemonError (an Error reply: .code_name, .message and .retry_after_ms) and
ReloadError. After a Timeout the connection stays usable: the late reply is recognised by
its id and dropped when it arrives.

Robots that do not wait: step_send() sends a Step and returns at once, poll_action()
picks up the newest reply that has arrived (None when none has; fileno() for select()),
and a Follower keeps applying the plan each Action carries (Action.plan, one row per
control period) between replies and while one is late. With delay_steps=1 the daemon plans
for the moment the action will be applied, one period after the observation:

    import itertools, time
    from mpc_client import Client, Follower, Overloaded
    c = Client("tcp://127.0.0.1:7070", timeout=1.0)
    w = c.hello("my-robot", rate_hz=50)
    period, delay = w.control_period_s, 1
    follower = Follower(w.action_size)
    t0 = time.monotonic()
    for k in itertools.count():            # observation k is taken at t0 + k * period
        if not c.in_flight:                # one request at a time; never blocks
            c.step_send(robot.observe(), seq=k, reset=(k == 0), delay_steps=delay)
        try:
            a = c.poll_action()            # timeout 0: only what has arrived
        except Overloaded:
            a = None                       # keep following the plan held
        if a is not None:                  # row 0 is for observation a.seq + delay, or now
            now = time.monotonic()         # if that has passed (it cannot act earlier)
            follower.update(a, max(now, t0 + (a.seq + delay) * period))
        action, state = follower.action_at(time.monotonic())
        robot.apply(action)                # state: FOLLOW_PLAN, _PAST_END or _NO_PLAN
        time.sleep(max(0.0, t0 + (k + 1) * period - time.monotonic()))

A blocking call (step, status, ...) made while async steps are in flight drops their
replies (counted in dropped_replies, like the replies poll_action superseded).

Admission control: a daemon that has no capacity left for the rate a Hello declares
refuses it with Overloaded (a DaemonError); the connection stays open, and hello() may be
called again on it after e.retry_after_ms milliseconds:

    try:
        welcome = c.hello("my-robot", rate_hz=50)
    except Overloaded as e:
        time.sleep(e.retry_after_ms / 1000)   # then try again, or give up

Session resume (README "A fleet of daemons"): the client keeps the session's recent
history, the newest Welcome.history_steps answered steps as (observation, action returned
for it, reward) in client.history (a Step with reset=True, or reset(), clears it; every
Action read counts, also those poll_action superseded). When a call on the open session
finds its connection dropped (closed, reset, refused) or the daemon says DRAINING or
SHUTTING_DOWN (an instance killed, drained or restarted behind a balancer), the client
connects to the same address again and says Hello with the first hello()'s arguments
(the sizes the session was opened with) and that history; the daemon replays it into the
belief and the episode goes on. step() then sends its step again and returns its Action,
so the robot loses at most that step's latency; status() and reset() are sent again too,
reload() and drain() are not (the next call resumes). poll_action() returns None (or the
newest Action read before the failure) after resuming: the steps in flight are lost,
counted in dropped_replies; step_send() on a connection that is broken or announced
closing resumes before sending. The first Hello goes at once, the next ones after
resume_backoff seconds doubling up to resume_backoff_max, resume_attempts in all; a Hello
refused with DRAINING, OVERLOADED (its retry_after_ms, capped by resume_backoff_max),
SHUTTING_DOWN or NOT_READY is tried again (the balancer may still route there). Then
ResumeFailed (a ConnectionLost) names the last error; the history is kept and the next
call tries again. client.resumes counts the resumes, client.welcome is the newest
Welcome (resumed_steps: the steps the daemon replayed). Client(resume=False), or a
client that never opened a session, raises ConnectionLost as before:

    c = Client("tcp://fleet.local:7070", timeout=1.0, resume_attempts=8,
               resume_backoff=0.05, resume_backoff_max=2.0)
    c.hello("my-robot", rate_hz=50)
    ...
    action = c.step(obs, seq=k)           # an instance went away: resumed, same step
    print(c.resumes, c.welcome.resumed_steps)

Camera robots (README "Camera robots"): when the daemon serves a pixel model, the Welcome
says which image it takes (image_height, image_width, image_channels; observation_size
0), and each step sends one image instead of an observation vector: bytes of H x W x C
uint8 (HWC, top row first) or a numpy uint8 array of shape (H, W, C):

    w = c.hello("camera-robot")
    action = c.step(image=frame, seq=k, reward=r)   # frame.shape == (w.image_height, ...)

Resume works the same; the history then holds the images.
"""

import collections
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


class ResumeFailed(ConnectionLost):
    """The connection dropped (or the daemon drained) and the session could not be
    resumed within the client's resume_attempts: .last_error is the last failure (a
    ConnectError, ConnectionLost, Timeout or the DaemonError refusing the Hello) and
    .attempts the number of Hellos tried. The client keeps the session's history: the
    next call tries to resume again."""

    def __init__(self, message, last_error=None, attempts=0):
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


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


# Error codes that end an open session's connection: reconnect and resume it.
RESUME_ON = ("DRAINING", "SHUTTING_DOWN")
# Hello refusals that a resume retries: the balancer may still route to an instance that
# is draining, stopping, full or still loading until its health check notices.
RESUME_HELLO_RETRY = ("DRAINING", "OVERLOADED", "SHUTTING_DOWN", "NOT_READY")


class Client:
    """One connection to mpcd. Not thread-safe: use one per thread.

    resume (default True): when the connection of an open session drops (or the daemon
    drains it), reconnect to the same address and resume the session with its recent
    history (module docstring); resume_attempts Hellos at most per failure, the first at
    once, then after resume_backoff seconds doubling up to resume_backoff_max."""

    def __init__(self, address=None, timeout=DEFAULT_TIMEOUT, pb2_path=None, connect=True,
                 resume=True, resume_attempts=8, resume_backoff=0.05, resume_backoff_max=2.0):
        self.pb = load_pb2(pb2_path)
        self.address = address or DEFAULT_ADDRESS
        self.timeout = timeout
        self.sock = None
        self.broken = False
        self.next_id = 1
        self.buf = bytearray()
        self.welcome = None
        # request id -> (seq, Step, episode) of each async step not yet answered
        self._in_flight = {}
        self._async_error = None  # an Error reply to an async step, raised by the next poll
        # Replies to async steps the caller never got: superseded by a newer one in
        # poll_action, read and discarded by a blocking call, or lost with a connection.
        self.dropped_replies = 0
        self.resume = bool(resume)
        if int(resume_attempts) < 1:
            raise ValueError("resume_attempts must be at least 1")
        if not (resume_backoff >= 0 and resume_backoff_max >= 0):
            raise ValueError("resume_backoff and resume_backoff_max cannot be negative")
        self.resume_attempts = int(resume_attempts)
        self.resume_backoff = float(resume_backoff)
        self.resume_backoff_max = float(resume_backoff_max)
        self.resumes = 0  # sessions resumed on a new connection
        self._hello_args = None  # the arguments of the Hello that opened the session
        self._history = collections.deque(maxlen=0)  # (observation, action, reward, image or None)
        self._episode = 0  # bumped by every reset: replies of older steps are not history
        self._held = None  # an Action read before a resume, for the next poll_action()
        if connect:
            self.connect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _open_socket(self):
        kind, host, port = parse_address(self.address)
        sock = None
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(host)
            else:
                sock = socket.create_connection((host, port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            if sock is not None:
                sock.close()
            raise ConnectError("cannot connect to %s: %s" % (self.address,
                                                            e.strerror or e)) from None
        self.sock = sock
        self.broken = False
        self.buf = bytearray()
        self._in_flight.clear()
        self._async_error = None

    def _drop_socket(self):
        """Closes the connection but keeps the session (welcome, history) for a resume."""
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf = bytearray()
        self._in_flight.clear()
        self._async_error = None

    def connect(self, address=None):
        """Opens a new connection (closing the current one and forgetting its session)."""
        self.close()
        if address:
            self.address = address
        self._open_socket()

    def close(self):
        """Closes the connection and forgets the session: nothing resumes it."""
        self._drop_socket()
        self.welcome = None
        self._hello_args = None
        self._history = collections.deque(maxlen=0)
        self._held = None

    @property
    def history(self):
        """The session's recent answered steps kept for resume, oldest first: a list of
        (observation, action, reward) tuples, at most Welcome.history_steps of them; a
        pixel session's are (observation, action, reward, image), observation empty and
        image the Step's bytes."""
        return [e[:3] if e[3] is None else e for e in self._history]

    def fileno(self):
        """The connection's socket descriptor, for select()/poll() in the caller's own loop
        (-1 when not connected). Wait on it for reading only, and read through
        poll_action(); a reply already buffered by an earlier call does not make it
        readable, so call poll_action(0) once per control tick as well."""
        return self.sock.fileno() if self.sock is not None else -1

    @property
    def in_flight(self):
        """Steps sent with step_send() whose replies have not been read yet."""
        return len(self._in_flight)

    def _lost(self, exc_type, why):
        self.broken = True
        return exc_type("%s; the connection is no longer usable" % why)

    def _next_reply(self, deadline):
        """The next Reply on the connection, reading until the monotonic deadline; None
        when none is complete by then. A deadline already past still reads what has
        arrived, without waiting."""
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
                return rep
            self.sock.settimeout(max(deadline - time.monotonic(), 0.0))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                return None
            except OSError as e:
                raise self._lost(ConnectionLost, "receiving failed: %s" % e) from None
            if not chunk:
                if self.buf:
                    raise self._lost(ConnectionLost, "the daemon closed the connection in "
                                     "the middle of a reply (%d bytes received)" % len(self.buf))
                raise self._lost(ConnectionLost, "the daemon closed the connection")
            self.buf += chunk

    def _recv_reply(self, want_id, deadline):
        """The reply to the blocking request want_id. Replies to async steps still in
        flight are dropped (counted in dropped_replies; their Actions still go into the
        history), as are late replies to calls that timed out."""
        while True:
            rep = self._next_reply(deadline)
            if rep is None:
                raise Timeout("timed out after %g s waiting for the daemon's reply"
                              % self.timeout)
            if rep.id == want_id:
                return rep
            if self._take_async_reply(rep):
                continue
            if rep.WhichOneof("body") == "error" and rep.id == 0:
                return rep  # about a frame the daemon could not read, or it is draining
            if rep.id < want_id:
                continue  # late answer to a call that timed out
            raise self._lost(ProtocolError, "unexpected reply id %d while waiting for %d"
                             % (rep.id, want_id))

    def _take_async_reply(self, rep):
        """Drops the reply to an async step nobody will pick up (counted in
        dropped_replies; an Action still goes into the history). False when rep does
        not answer an async step in flight."""
        entry = self._in_flight.pop(rep.id, None)
        if entry is None:
            return False
        seq, step, episode = entry
        if rep.WhichOneof("body") == "action" and rep.action.seq == seq:
            self._record(step, rep.action, episode)
        self.dropped_replies += 1
        return True

    def _daemon_error(self, err):
        """The DaemonError (Overloaded for OVERLOADED) of an Error reply."""
        name = self.pb.Error.Code.Name(err.code) \
            if err.code in self.pb.Error.Code.values() else "UNKNOWN"
        cls = Overloaded if name == "OVERLOADED" else DaemonError
        return cls(err.code, name, err.message, getattr(err, "retry_after_ms", 0))

    def _check_usable(self):
        if self.sock is None:
            raise ConnectionLost("not connected")
        if self.broken:
            raise ConnectionLost("the connection is broken after an earlier error; "
                                 "connect again")

    def _send(self, **body):
        """Sends a Request with one body field set; returns its id."""
        self._check_usable()
        req = self.pb.Request(id=self.next_id, **body)
        self.next_id += 1
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(encode_frame(req))
        except socket.timeout:
            raise self._lost(Timeout, "timed out sending the request") from None
        except OSError as e:
            raise self._lost(ConnectionLost, "sending failed: %s" % e) from None
        return req.id

    def _call(self, want, **body):
        """Sends a Request with one body field set; returns the reply's `want` message."""
        deadline = time.monotonic() + self.timeout
        rep = self._recv_reply(self._send(**body), deadline)
        kind = rep.WhichOneof("body")
        if kind == "error":
            raise self._daemon_error(rep.error)
        if kind != want:
            raise ProtocolError("the daemon answered with %s, expected %s" % (kind, want))
        return getattr(rep, want)

    # ---- resume (module docstring) ----

    def _session_open(self):
        """True when a failure of the connection is to be resumed: resume is on and a
        session was opened (hello() answered) since the last connect() or close()."""
        return self.resume and self._hello_args is not None

    def _resumable(self, exc):
        """True when exc ends the open session's connection and a resume may save it."""
        if not self._session_open():
            return False
        if isinstance(exc, ConnectionLost):
            return not isinstance(exc, ResumeFailed)
        return isinstance(exc, DaemonError) and exc.code_name in RESUME_ON

    def _closing_cause(self):
        """Without waiting: why the open session's connection can carry no request (an
        exception to resume with), or None. Reads what has arrived into self.buf (left
        there for the reply readers) and looks in it for the daemon's closing notice,
        an Error DRAINING or SHUTTING_DOWN with request id 0, and for the end of the
        stream."""
        if self.sock is None:
            return ConnectionLost("not connected")
        if self.broken:
            return ConnectionLost("the connection broke earlier")
        ended = None
        self.sock.settimeout(0.0)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    ended = ConnectionLost("the daemon closed the connection")
                    break
                self.buf += chunk
        except (BlockingIOError, InterruptedError, socket.timeout):
            pass
        except OSError as e:
            ended = ConnectionLost("receiving failed: %s" % e)
        data = bytes(self.buf)
        while data:
            try:
                payload, used = split_frame(data)
            except ProtocolError:
                break  # the reply readers will say so
            if payload is None:
                break
            data = data[used:]
            rep = self.pb.Reply()
            try:
                rep.ParseFromString(payload)
            except Exception:
                break
            if rep.id == 0 and rep.WhichOneof("body") == "error":
                err = self._daemon_error(rep.error)
                if err.code_name in RESUME_ON:
                    return err
        return ended

    def _take_buffered(self):
        """Consumes the complete replies in self.buf before a resume drops them: the
        Actions answering async steps go into the history, and the newest is held for
        the next poll_action() (older ones count as dropped)."""
        while True:
            try:
                payload, used = split_frame(self.buf)
            except ProtocolError:
                return
            if payload is None:
                return
            del self.buf[:used]
            rep = self.pb.Reply()
            try:
                rep.ParseFromString(payload)
            except Exception:
                return
            entry = self._in_flight.get(rep.id)
            if entry is None or rep.WhichOneof("body") != "action" or \
                    rep.action.seq != entry[0]:
                self._take_async_reply(rep)  # an Error or a stray reply: dropped
                continue
            del self._in_flight[rep.id]
            self._record(entry[1], rep.action, entry[2])
            if self._held is not None:
                self.dropped_replies += 1
            self._held = rep.action

    def _resume_if_closing(self):
        """Before sending on an open session: resumes first when the connection is
        already broken, closed by the daemon or announced closing (DRAINING)."""
        if self._session_open():
            cause = self._closing_cause()
            if cause is not None:
                self._take_buffered()
                self._resume(cause)

    def _resume(self, cause):
        """Reconnects to self.address and resumes the session: Hello with its first
        arguments and the history. Steps in flight are lost (counted in dropped_replies).
        Up to resume_attempts Hellos: the first at once, then after resume_backoff
        doubling up to resume_backoff_max (after OVERLOADED, its retry_after_ms capped by
        that maximum). Returns the Welcome; raises ResumeFailed."""
        self.dropped_replies += len(self._in_flight)
        self._drop_socket()
        last = cause
        for attempt in range(self.resume_attempts):
            if attempt:
                wait = min(self.resume_backoff * 2 ** (attempt - 1), self.resume_backoff_max)
                if isinstance(last, Overloaded) and last.retry_after_ms:
                    wait = min(last.retry_after_ms / 1000.0, self.resume_backoff_max)
                time.sleep(wait)
            try:
                self._open_socket()
                welcome = self._call("welcome", hello=self._hello_message(resume=True))
            except DaemonError as e:
                self._drop_socket()
                last = e
                if e.code_name in RESUME_HELLO_RETRY:
                    continue
                raise ResumeFailed("%s; resuming the session on %s failed: the Hello was "
                                   "refused (%s)" % (cause, self.address, e),
                                   e, attempt + 1) from e
            except (ConnectError, ConnectionLost, Timeout, ProtocolError) as e:
                self._drop_socket()
                last = e
                continue
            self._welcomed(welcome, new_session=False)
            self.resumes += 1
            return welcome
        raise ResumeFailed("%s; could not resume the session on %s in %d attempt%s; "
                           "last error: %s" % (cause, self.address, self.resume_attempts,
                                               "" if self.resume_attempts == 1 else "s",
                                               last), last, self.resume_attempts) from last

    def _session_call(self, want, resend=True, **body):
        """_call on the open session, resuming it when its connection is broken, drops or
        drains (module docstring); with resend, the request goes again on the new
        connection (at most resume_attempts times), else the failure is raised after
        the connection was marked broken, for the next call to resume."""
        if self._held is not None:  # a blocking call drops what poll_action did not take
            self._held = None
            self.dropped_replies += 1
        self._resume_if_closing()
        resent = 0
        while True:
            try:
                return self._call(want, **body)
            except (ConnectionLost, DaemonError) as e:
                if not self._resumable(e):
                    raise
                self.broken = True
                if not resend:
                    raise
                if resent >= self.resume_attempts:
                    raise ResumeFailed("the request failed again after %d resumes: %s"
                                       % (resent, e), e, resent) from e
                self._resume(e)
                resent += 1

    def _record(self, step, action, episode=None):
        """Appends an answered step to the history (unless it belongs to an episode that
        a reset has ended since it was sent)."""
        if episode is not None and episode != self._episode:
            return
        if self._history.maxlen:
            image = bytes(step.image) if getattr(step, "image", b"") else None
            self._history.append((list(step.observation), list(action.action),
                                  float(step.reward), image))

    def _new_episode(self):
        """A reset was sent: the history so far belongs to the episode it ends."""
        self._history.clear()
        self._episode += 1

    def _hello_message(self, resume=False):
        """The Hello of self._hello_args; for a resume, with the sizes the session was
        opened with (so an instance serving another model refuses it) and the history."""
        fields = dict(self._hello_args)
        rate_hz = fields.pop("rate_hz")
        if resume and self.welcome is not None:
            for size in ("observation_size", "action_size"):
                fields[size] = fields[size] or getattr(self.welcome, size)
        if rate_hz:  # unset when 0, so an mpc_pb2 built before rate_hz still works
            fields["rate_hz"] = float(rate_hz)
        if not fields["seed"]:
            del fields["seed"]
        msg = self.pb.Hello(**fields)
        if resume and self._history:
            msg.history.extend(
                self.pb.HistoryStep(observation=obs, action=act, reward=rew,
                                    **({"image": img} if img is not None else {}))
                for obs, act, rew, img in self._history)
        return msg

    def _welcomed(self, welcome, new_session):
        """Takes a Welcome: the ring keeps the newest Welcome.history_steps steps."""
        self.welcome = welcome
        keep = int(getattr(welcome, "history_steps", 0))
        self._history = collections.deque(() if new_session else self._history, maxlen=keep)

    def hello(self, client_name="", auth_token="", observation_size=0, action_size=0,
              rate_hz=0.0, seed=0):
        """Opens a session; returns the Welcome (also kept as self.welcome).

        rate_hz: steps per second this client will send, for the daemon's admission
        control (0: one per control period of the model; the daemon accepts 0 .. 1000).
        The Welcome's rate_hz and min_iterations say what the session was admitted for.
        seed: the session's random draws (planner, exploration noise); the same seed,
        model and observations give the same actions. 0: the daemon picks one.
        Raises Overloaded (with .retry_after_ms) when the daemon has no capacity for it;
        the connection stays usable and hello() may be called again later.

        The arguments are kept: a resume says Hello again with them (module docstring).
        A new session starts with an empty history; Welcome.history_steps says how many
        steps the client keeps (0: none)."""
        args = dict(client_name=client_name, auth_token=auth_token,
                    observation_size=observation_size, action_size=action_size,
                    rate_hz=float(rate_hz or 0.0), seed=int(seed or 0))
        saved, self._hello_args = self._hello_args, args
        try:
            welcome = self._call("welcome", hello=self._hello_message())
        except BaseException:
            self._hello_args = saved
            raise
        self._held = None
        self._episode += 1
        self._welcomed(welcome, new_session=True)
        return welcome

    def _image_bytes(self, image):
        """A Step's image as bytes, checked against the session's Welcome: bytes-like, or
        a numpy uint8 array of shape (H, W, C) (or (H, W) for one channel)."""
        w = self.welcome
        shape = (int(getattr(w, "image_height", 0)), int(getattr(w, "image_width", 0)),
                 int(getattr(w, "image_channels", 0))) if w is not None else None
        if hasattr(image, "dtype") and hasattr(image, "shape"):  # numpy (or alike)
            if str(image.dtype) != "uint8":
                raise ValueError("image has dtype %s; expected uint8" % image.dtype)
            if shape and shape[2]:
                dims = tuple(int(x) for x in image.shape)
                if dims != shape and not (shape[2] == 1 and dims == shape[:2]):
                    raise ValueError("image has shape %s; the session takes %dx%dx%d (HxWxC)"
                                     % (dims, *shape))
            data = image.tobytes(order="C")
        else:
            data = bytes(image)
        if w is not None:
            if not shape[2]:
                raise ValueError("the session's model takes %d observation values and no "
                                 "image" % w.observation_size)
            if len(data) != shape[0] * shape[1] * shape[2]:
                raise ValueError("image has %d bytes; the session takes %dx%dx%d = %d"
                                 % (len(data), *shape, shape[0] * shape[1] * shape[2]))
        return data

    def _step_message(self, observation, seq, reward, reset, deadline_us, exploration_noise,
                      delay_steps, applied_actions, image=None):
        """The Step message of step() and step_send(), checked against the session."""
        obs = [float(x) for x in (observation if observation is not None else ())]
        w = self.welcome
        if image is None and w is not None and getattr(w, "image_channels", 0):
            raise ValueError("the session's model takes %dx%dx%d images: pass image="
                             % (w.image_height, w.image_width, w.image_channels))
        if self.welcome is not None and len(obs) != self.welcome.observation_size:
            raise ValueError("observation has %d floats, the session expects %d"
                             % (len(obs), self.welcome.observation_size))
        if not all(math.isfinite(x) for x in obs):
            raise ValueError("observation contains NaN or infinity")
        fields = dict(seq=seq, observation=obs, reward=reward, reset=reset,
                      deadline_us=deadline_us, exploration_noise=exploration_noise)
        if image is not None:  # unset otherwise, so an mpc_pb2 built before images works
            fields["image"] = self._image_bytes(image)
        delay_steps = int(delay_steps)
        if delay_steps < 0:
            raise ValueError("delay_steps is %d; it cannot be negative" % delay_steps)
        applied = []
        for x in applied_actions if applied_actions is not None else ():
            if hasattr(x, "__iter__"):  # one row per step
                applied.extend(float(v) for v in x)
            else:
                applied.append(float(x))
        if applied:
            if self.welcome is not None and \
                    len(applied) != delay_steps * self.welcome.action_size:
                raise ValueError("applied_actions has %d floats; expected delay_steps x "
                                 "action_size = %d x %d = %d"
                                 % (len(applied), delay_steps, self.welcome.action_size,
                                    delay_steps * self.welcome.action_size))
            if not all(math.isfinite(x) for x in applied):
                raise ValueError("applied_actions contains NaN or infinity")
            fields["applied_actions"] = applied
        if delay_steps:  # unset when 0, so an mpc_pb2 built before delay_steps still works
            fields["delay_steps"] = delay_steps
        return self.pb.Step(**fields)

    def step(self, observation=(), seq=0, reward=0.0, reset=False, deadline_us=0,
             exploration_noise=0.0, delay_steps=0, applied_actions=None, image=None):
        """Sends one observation and waits; returns the Action (action, plan, plan_step_s,
        iterations, plan_us, ...).

        image: a camera robot's observation for a pixel model (Welcome.image_height,
        image_width, image_channels not 0; README "Camera robots"): bytes of H x W x C
        uint8, HWC with the top row first, or a numpy uint8 array of shape (H, W, C); the
        observation is then empty. With a session open a wrong size or kind raises
        ValueError before anything is sent.

        delay_steps: control steps between this observation and the moment the returned
        action is applied (0: now); the daemon plans from the belief predicted that far
        ahead, at most its planner horizon (else DaemonError INVALID_VALUE).
        applied_actions: the actions the robot applies over those steps when they differ
        from what the daemon returned for them, delay_steps x action_size floats in time
        order (flat, or one row per step; None or empty: the daemon's own). With a session
        open a wrong count raises ValueError before anything is sent; values outside the
        action bounds get DaemonError INVALID_VALUE.

        The answered step goes into the history (reset=True clears it first). When the
        connection drops or drains, the session is resumed and the step sent again
        (module docstring); ResumeFailed when that does not succeed."""
        msg = self._step_message(observation, seq, reward, reset, deadline_us,
                                 exploration_noise, delay_steps, applied_actions, image)
        if reset:
            self._new_episode()
        action = self._session_call("action", step=msg)
        if action.seq != seq:
            raise ProtocolError("Action for seq %d while waiting for %d" % (action.seq, seq))
        self._record(msg, action)
        return action

    def step_send(self, observation=(), seq=0, reward=0.0, reset=False, deadline_us=0,
                  exploration_noise=0.0, delay_steps=0, applied_actions=None, image=None):
        """Sends one observation without waiting for the reply (arguments as step());
        returns the request id. Pick the reply up with poll_action(). Several steps may be
        in flight (the daemon answers them in order; beyond its `max-queued` per
        connection it answers Overloaded). Only the write can block, for at most
        `timeout` seconds; a robot's small frames fit the socket buffer.

        On a connection that is broken, closed or announced closing (DRAINING) the
        session is resumed first, and when the write fails it is resumed and the step
        sent again (module docstring)."""
        msg = self._step_message(observation, seq, reward, reset, deadline_us,
                                 exploration_noise, delay_steps, applied_actions, image)
        if reset:
            self._new_episode()
        self._resume_if_closing()
        try:
            req_id = self._send(step=msg)
        except ConnectionLost as e:
            if not self._resumable(e):
                raise
            self._resume(e)
            req_id = self._send(step=msg)
        self._in_flight[req_id] = (seq, msg, self._episode)
        return req_id

    def poll_action(self, timeout=0.0):
        """Reads the replies to step_send() that have arrived, waiting at most `timeout`
        seconds for the first (0: not at all; None: the client's timeout), and returns the
        newest Action among them, or None when none arrived in time (at once when no step
        is in flight). Older Actions read in the same call are superseded: dropped and
        counted in dropped_replies. Every Action read goes into the history.

        An Error reply to an async step raises DaemonError (Overloaded for OVERLOADED).
        When an Action was read before it in the same call, that Action is returned and
        the error is raised by the next poll_action() instead, so nothing is lost.
        Connection failures raise as in step(), unless the session is resumed (module
        docstring): then the steps in flight are lost (counted in dropped_replies) and
        the newest Action read before the failure, or None, is returned."""
        if self._async_error is not None:
            err, self._async_error = self._async_error, None
            raise err
        newest, self._held = self._held, None
        try:
            if self._session_open() and (self.sock is None or self.broken):
                self._resume(ConnectionLost("the connection broke earlier"))
                return newest
            self._check_usable()
            return self._poll(timeout, newest)
        except ResumeFailed:
            self._held = newest  # for the next poll, once resumed
            raise

    def _poll(self, timeout, newest):
        wait = self.timeout if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + wait
        try:
            while self._in_flight:
                # Once an Action is in hand, take only what has already arrived.
                rep = self._next_reply(deadline if newest is None else 0.0)
                if rep is None:
                    break
                kind = rep.WhichOneof("body")
                entry = self._in_flight.pop(rep.id, None)
                if entry is None:
                    if kind == "error" and rep.id == 0:  # about a frame it could not
                        err = self._daemon_error(rep.error)  # read, or it is draining
                        if self._resumable(err):
                            self._resume(err)
                            return newest
                        raise err
                    if rep.id < self.next_id:
                        continue  # late answer to a blocking call that timed out
                    raise self._lost(ProtocolError, "unexpected reply id %d (the last "
                                     "request sent was %d)" % (rep.id, self.next_id - 1))
                seq, step, episode = entry
                if kind == "error":
                    err = self._daemon_error(rep.error)
                    if self._resumable(err):
                        self.dropped_replies += 1  # that step is lost with the others
                        self._resume(err)
                        return newest
                    if newest is None:
                        raise err
                    self._async_error = err
                    break
                if kind != "action":
                    raise ProtocolError("the daemon answered a step with %s" % kind)
                if rep.action.seq != seq:
                    raise ProtocolError("Action for seq %d answers a step sent with seq %d"
                                        % (rep.action.seq, seq))
                self._record(step, rep.action, episode)
                if newest is not None:
                    self.dropped_replies += 1
                newest = rep.action
        except ConnectionLost as e:
            if not self._resumable(e):
                raise
            self._resume(e)
        return newest

    def reset(self):
        """Starts a new episode (the history is cleared)."""
        self._new_episode()
        self._session_call("ack", reset=self.pb.Reset())

    def status(self):
        """Returns the StatusReply (its .json holds the daemon's full /status document)."""
        return self._session_call("status", status=self.pb.Status())

    def reload(self, path=""):
        """Hot-swaps the model; raises ReloadError when the daemon keeps the old one.
        Not sent again after a resume (its outcome is unknown): the connection failure
        is raised, and the next call resumes."""
        try:
            reply = self._session_call("reload", resend=False,
                                       reload=self.pb.Reload(path=path or ""))
        except DaemonError as e:
            if e.code_name == "RELOAD_FAILED":
                raise ReloadError(str(e)) from None
            raise
        if not reply.ok:
            raise ReloadError("reload refused, still serving model version %d: %s"
                              % (reply.model_version, reply.message), reply)
        return reply

    def drain(self):
        """Admin: the instance drains (as on SIGTERM): it admits no new session and hands
        the open ones over (each client resumes elsewhere). Needs the admin role (a Hello
        with the daemon's admin-token), else DaemonError PERMISSION_DENIED."""
        self._session_call("ack", resend=False, drain=self.pb.Drain())


FOLLOW_PLAN = "plan"          # a row of a plan that covers t
FOLLOW_PAST_END = "past_end"  # t is past the newest started plan's last row: it holds
FOLLOW_NO_PLAN = "no_plan"    # no plan has started by t: the initial action

# Times within this fraction of a control period before a row's start count as inside it,
# so that t computed as start + k * period lands in row k despite rounding.
FOLLOW_EPSILON = 1e-6


class Follower:
    """What a robot applies between replies (libmpcclient's mpc_follower).

    Keeps the newest plans (Action.plan, Action.plan_step_s) with the time their first row
    takes effect: for a Step sent with delay_steps d, the observation's time +
    d * plan_step_s, or the reply's arrival when that is later (a plan cannot act before
    it is known; with d = 0 the action in force holds until the reply comes). action_at(t) answers the action of the newest plan that has started
    by t: row floor((t - start) / plan_step_s), a zero-order hold per control step. When t
    runs past that plan's last row the last row holds and the state says so. A plan whose
    start lies in the future (a delayed reply) waits while the older one goes on. Times
    are the caller's, in seconds, from one clock (time.monotonic() is a good one). Not
    thread-safe."""

    def __init__(self, action_size, initial=None, max_plans=8):
        """action_size floats per action; initial: the action before any plan starts
        (None: zeros); max_plans (>= 2; a delay of d steps needs d + 2): plans held at
        most, the oldest going first."""
        self.action_size = int(action_size)
        if self.action_size < 1:
            raise ValueError("action_size must be at least 1")
        if int(max_plans) < 2:
            raise ValueError("max_plans must be at least 2 (a delay of d steps needs d + 2)")
        self.max_plans = int(max_plans)
        self.initial = [0.0] * self.action_size if initial is None else \
            [float(x) for x in initial]
        if len(self.initial) != self.action_size:
            raise ValueError("initial has %d floats, expected %d"
                             % (len(self.initial), self.action_size))
        self._plans = []  # (start, step_s, rows), oldest first; starts never decrease

    def __len__(self):
        """Plans held (started or waiting)."""
        return len(self._plans)

    def update(self, action, start):
        """Takes the plan of reply `action` (an Action: .action, .plan, .plan_step_s) whose
        row 0 takes effect at `start`. A reply without a plan (an empty .plan, from a
        daemon before plans) is a one-row plan that holds until a newer one starts.
        Returns True when taken, False when stale: it starts before the newest plan held
        (its reply was overtaken) and is ignored. A plan with the same start replaces
        that one. Raises ValueError when the sizes do not fit action_size."""
        A = self.action_size
        first = [float(x) for x in action.action]
        if len(first) != A:
            raise ValueError("the action has %d floats, the follower expects %d"
                             % (len(first), A))
        plan = [float(x) for x in getattr(action, "plan", ())]
        step_s = float(getattr(action, "plan_step_s", 0.0))
        if plan:
            if len(plan) % A:
                raise ValueError("the plan has %d floats, not a whole number of rows of %d"
                                 % (len(plan), A))
            if not (step_s > 0 and math.isfinite(step_s)):
                raise ValueError("the plan's plan_step_s is %r; it must be positive" % step_s)
            rows = [plan[i:i + A] for i in range(0, len(plan), A)]
        else:
            rows, step_s = [first], math.inf  # row 0 for ever
        start = float(start)
        if self._plans and start < self._plans[-1][0]:
            return False
        if self._plans and start == self._plans[-1][0]:
            self._plans.pop()
        self._plans.append((start, step_s, rows))
        del self._plans[:-self.max_plans]
        return True

    def action_at(self, t):
        """(action, state) for time t: the action as a list of floats and FOLLOW_PLAN,
        FOLLOW_PAST_END (the newest started plan's last row, holding) or FOLLOW_NO_PLAN
        (the initial action: nothing has started by t). A pure lookup: t may go back and
        forth (a robot may ask for the steps ahead, e.g. to send them as applied_actions);
        plans leave only when max_plans are held."""
        current = None
        for i in range(len(self._plans) - 1, -1, -1):
            start, step_s, _ = self._plans[i]
            eps = FOLLOW_EPSILON * step_s if math.isfinite(step_s) else 0.0
            if t >= start - eps:
                current = i
                break
        if current is None:
            return list(self.initial), FOLLOW_NO_PLAN
        start, step_s, rows = self._plans[current]
        row = max(0, math.floor((t - start) / step_s + FOLLOW_EPSILON))
        if row >= len(rows):
            return list(rows[-1]), FOLLOW_PAST_END
        return list(rows[row]), FOLLOW_PLAN

    def clear(self):
        """Forgets every plan (a new episode): the initial action holds again."""
        self._plans.clear()
