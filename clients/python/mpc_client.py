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
ConnectionLost, ProtocolError, DaemonError (an Error reply: .code_name, .message and
.retry_after_ms) and ReloadError. After a Timeout the connection stays usable: the late
reply is recognised by its id and dropped when it arrives.

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
        self._in_flight = {}  # request id -> seq of each async step not yet answered
        self._async_error = None  # an Error reply to an async step, raised by the next poll
        # Replies to async steps the caller never got: superseded by a newer one in
        # poll_action, or read and discarded by a blocking call.
        self.dropped_replies = 0
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
        self._in_flight.clear()
        self._async_error = None

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.welcome = None
        self._in_flight.clear()
        self._async_error = None

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
        flight are dropped (counted in dropped_replies), as are late replies to calls
        that timed out."""
        while True:
            rep = self._next_reply(deadline)
            if rep is None:
                raise Timeout("timed out after %g s waiting for the daemon's reply"
                              % self.timeout)
            if rep.id == want_id:
                return rep
            if self._in_flight.pop(rep.id, None) is not None:
                self.dropped_replies += 1
                continue
            if rep.WhichOneof("body") == "error" and rep.id == 0:
                return rep  # about a frame the daemon could not read: ours
            if rep.id < want_id:
                continue  # late answer to a call that timed out
            raise self._lost(ProtocolError, "unexpected reply id %d while waiting for %d"
                             % (rep.id, want_id))

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

    def _step_message(self, observation, seq, reward, reset, deadline_us, exploration_noise,
                      delay_steps, applied_actions):
        """The Step message of step() and step_send(), checked against the session."""
        obs = [float(x) for x in observation]
        if self.welcome is not None and len(obs) != self.welcome.observation_size:
            raise ValueError("observation has %d floats, the session expects %d"
                             % (len(obs), self.welcome.observation_size))
        if not all(math.isfinite(x) for x in obs):
            raise ValueError("observation contains NaN or infinity")
        fields = dict(seq=seq, observation=obs, reward=reward, reset=reset,
                      deadline_us=deadline_us, exploration_noise=exploration_noise)
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

    def step(self, observation, seq=0, reward=0.0, reset=False, deadline_us=0,
             exploration_noise=0.0, delay_steps=0, applied_actions=None):
        """Sends one observation and waits; returns the Action (action, plan, plan_step_s,
        iterations, plan_us, ...).

        delay_steps: control steps between this observation and the moment the returned
        action is applied (0: now); the daemon plans from the belief predicted that far
        ahead, at most its planner horizon (else DaemonError INVALID_VALUE).
        applied_actions: the actions the robot applies over those steps when they differ
        from what the daemon returned for them, delay_steps x action_size floats in time
        order (flat, or one row per step; None or empty: the daemon's own). With a session
        open a wrong count raises ValueError before anything is sent; values outside the
        action bounds get DaemonError INVALID_VALUE."""
        msg = self._step_message(observation, seq, reward, reset, deadline_us,
                                 exploration_noise, delay_steps, applied_actions)
        action = self._call("action", step=msg)
        if action.seq != seq:
            raise ProtocolError("Action for seq %d while waiting for %d" % (action.seq, seq))
        return action

    def step_send(self, observation, seq=0, reward=0.0, reset=False, deadline_us=0,
                  exploration_noise=0.0, delay_steps=0, applied_actions=None):
        """Sends one observation without waiting for the reply (arguments as step());
        returns the request id. Pick the reply up with poll_action(). Several steps may be
        in flight (the daemon answers them in order; beyond its `max-queued` per
        connection it answers Overloaded). Only the write can block, for at most
        `timeout` seconds; a robot's small frames fit the socket buffer."""
        msg = self._step_message(observation, seq, reward, reset, deadline_us,
                                 exploration_noise, delay_steps, applied_actions)
        req_id = self._send(step=msg)
        self._in_flight[req_id] = seq
        return req_id

    def poll_action(self, timeout=0.0):
        """Reads the replies to step_send() that have arrived, waiting at most `timeout`
        seconds for the first (0: not at all; None: the client's timeout), and returns the
        newest Action among them, or None when none arrived in time (at once when no step
        is in flight). Older Actions read in the same call are superseded: dropped and
        counted in dropped_replies.

        An Error reply to an async step raises DaemonError (Overloaded for OVERLOADED).
        When an Action was read before it in the same call, that Action is returned and
        the error is raised by the next poll_action() instead, so nothing is lost.
        Connection failures raise as in step()."""
        if self._async_error is not None:
            err, self._async_error = self._async_error, None
            raise err
        self._check_usable()
        wait = self.timeout if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + wait
        newest = None
        while self._in_flight:
            # Once an Action is in hand, take only what has already arrived.
            rep = self._next_reply(deadline if newest is None else 0.0)
            if rep is None:
                break
            kind = rep.WhichOneof("body")
            seq = self._in_flight.pop(rep.id, None)
            if seq is None:
                if kind == "error" and rep.id == 0:
                    raise self._daemon_error(rep.error)  # about a frame it could not read
                if rep.id < self.next_id:
                    continue  # late answer to a blocking call that timed out
                raise self._lost(ProtocolError, "unexpected reply id %d (the last request "
                                 "sent was %d)" % (rep.id, self.next_id - 1))
            if kind == "error":
                if newest is None:
                    raise self._daemon_error(rep.error)
                self._async_error = self._daemon_error(rep.error)
                break
            if kind != "action":
                raise ProtocolError("the daemon answered a step with %s" % kind)
            if rep.action.seq != seq:
                raise ProtocolError("Action for seq %d answers a step sent with seq %d"
                                    % (rep.action.seq, seq))
            if newest is not None:
                self.dropped_replies += 1
            newest = rep.action
        return newest

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
