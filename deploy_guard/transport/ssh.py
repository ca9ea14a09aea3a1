"""Run commands on a host over SSH with paramiko: the only module that imports paramiko.

The CLI imports this module lazily (``import paramiko`` costs ~150 ms, FIELD-NOTES). Where to
connect, as whom and with which keys comes from `sshconfig.resolve` (``ssh -G``). Here we open
the connection, check the host key against OpenSSH's known_hosts files before any credential
is sent, authenticate, and run each command on its own channel of the shared connection.

Longer than most modules on purpose: every paramiko call lives here, the one module the import
contracts let import paramiko (the key loading and the proxy command would otherwise need a
second one).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Final

# paramiko.config imports invoke, only for `Match exec` in paramiko's own SSHConfig, which we
# never use (`ssh -G` resolves the configuration): invoke and what it pulls in are 126 of the
# 335 modules `import paramiko` loads. Without it paramiko sets invoke = None and carries on.
if "invoke" not in sys.modules:
    sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        import paramiko
    finally:
        del sys.modules["invoke"]
else:
    import paramiko

from deploy_guard.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    HostUnreachable,
    TransportError,
    describe_exception,
)
from deploy_guard.transport.base import (
    PARAMIKO_LOGGER,
    CommandResult,
    LineStream,
    masked,
    remote_command_line,
)
from deploy_guard.transport.knownhosts import HostKey, host_key_names, load_known_hosts
from deploy_guard.transport.sshconfig import (
    SshTarget,
    expand_proxy_command,
    host_name_problem,
    resolve,
)

log = logging.getLogger(__name__)

# OpenSSH's MaxSessions defaults to 10 and frees slots late (FIELD-NOTES): stay well below.
DEFAULT_MAX_SESSIONS: Final = 4
MAX_JUMP_HOPS: Final = 8
# Handshakes in progress at once, over every host: sshd's MaxStartups (default 10:30:100)
# drops 30 % of the unauthenticated connections beyond 10 to one server, e.g. a jump host
# that a whole fleet is reached through. Once logged in, hosts are watched all at once.
MAX_HANDSHAKES: Final = 10
_HANDSHAKES: Final = threading.BoundedSemaphore(MAX_HANDSHAKES)
_CHUNK: Final = 65536

_Stream = socket.socket | paramiko.Channel | paramiko.ProxyCommand


class _ProxyCommand(paramiko.ProxyCommand):
    """``sh -c COMMAND`` as the connection's byte stream, fixing paramiko 5.1's habits: it
    pipes the command's stderr and never reads it (a chatty proxy blocks once 64 KiB are
    unread), its recv() spins until the timeout at EOF instead of returning b"", and it
    never reaps the process."""

    def __init__(self, command: str) -> None:
        super().__init__(shlex.join(["sh", "-c", command]))  # paramiko uses no shell itself
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None  # paramiko pipes all three
        assert stderr is not None
        self._stdout_fd = stdout.fileno()
        self.stderr_tail: deque[str] = deque(maxlen=3)
        self._stderr_reader = threading.Thread(target=self._read_stderr, args=(stderr,))
        self._stderr_reader.daemon = True
        self._stderr_reader.start()

    def _read_stderr(self, stderr: IO[bytes]) -> None:
        for line in stderr:
            text = line.decode("utf-8", errors="replace").rstrip()
            log.debug("ProxyCommand: %s", text)
            self.stderr_tail.append(text)

    def recv(self, size: int) -> bytes:
        ready, _, _ = select.select([self._stdout_fd], [], [], self.timeout)
        if not ready:
            raise TimeoutError
        return os.read(self._stdout_fd, size)  # b"" at EOF, like a socket

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)  # reap it: paramiko never does

    def failure(self) -> str:
        """How the command ended, if it did, for an error message."""
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr_reader.join(timeout=1)
        said = " / ".join(self.stderr_tail) or "no error output"
        return f"; the ProxyCommand exited with status {self.process.returncode}: {said}"


class _DemoteToDebug(logging.Filter):
    """paramiko logs the failures we raise as exceptions at ERROR, with tracebacks: keep its
    messages, but for debugging only. The logger let an ERROR record through before this
    filter runs, so a relabelled record is dropped here unless DEBUG is enabled (issue 14: a
    failed handshake printed a 21-line traceback with -q)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _PARAMIKO_LOG.isEnabledFor(logging.DEBUG)


_PARAMIKO_LOG: Final = logging.getLogger(PARAMIKO_LOGGER)
_PARAMIKO_LOG.addFilter(_DemoteToDebug())


class SshTransport:
    """A `Transport` over one SSH connection, shared by the threads that call `run`.

    Construction does no I/O; `connect` (or the first `run`) opens the connection, and opens
    a new one if the previous one died.
    """

    runs_sh = True  # remote commands can be `sh -c SCRIPT` (SystemdClient.batch)

    def __init__(
        self,
        host_name: str,
        target: SshTarget,
        *,
        become: Sequence[str] = (),
        connect_timeout: float = 15.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self._host = host_name
        self._target = target
        self._become = tuple(become)
        # ConnectTimeout from the ssh config wins over deploy-guard's default, as with ssh.
        self._connect_timeout = target.connect_timeout or connect_timeout
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._lock = threading.Lock()  # guards _transport and _jump
        self._keepalive_lock = threading.Lock()
        self._transport: paramiko.Transport | None = None
        self._jump: SshTransport | None = None
        self._jumps: tuple[str, ...] = ()  # the jump hosts this one serves, against loops

    @property
    def host(self) -> str:
        return self._host

    def connect(self) -> None:
        """Open the connection unless one is open.

        Raises:
            HostUnreachable: no TCP connection (or jump host channel), or the handshake failed.
            HostKeyUnknown: the host's key is in no known_hosts file.
            HostKeyChanged: the host's key differs from the known one.
            AuthenticationFailed: the server rejected every key we offered.
            ConfigError: ``ssh -G`` rejected the configuration of a ProxyJump host.
        """
        self._connected()

    def _connected(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self._close_locked()
            with contextlib.ExitStack() as cleanup:
                jump, stream = self._open_stream()
                cleanup.callback(jump.close if jump else stream.close)
                transport = paramiko.Transport(stream)
                transport.set_log_channel(_PARAMIKO_LOG.name)
                cleanup.callback(transport.close)
                with _HANDSHAKES:
                    self._handshake(transport)
                    self._authenticate(transport)
                cleanup.pop_all()
            if self._target.server_alive_interval > 0:
                transport.set_keepalive(self._target.server_alive_interval)
            self._transport, self._jump = transport, jump
            return transport

    @property
    def _address(self) -> str:
        hostname, port = self._target.hostname, self._target.port
        return f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"

    @property
    def _where(self) -> str:
        if self._target.proxy_jump:
            return f"{self._address} via jump host {self._target.proxy_jump}"
        return f"{self._address} via ProxyCommand" if self._target.proxy_command else self._address

    def _open_stream(self) -> tuple[SshTransport | None, _Stream]:
        """The byte stream the SSH session runs over: a jump host channel, a proxy or TCP."""
        target, timeout = self._target, self._connect_timeout
        if target.proxy_jump:
            return self._open_jump(target.proxy_jump)
        if target.proxy_command:
            return None, _ProxyCommand(expand_proxy_command(target.proxy_command, target))
        try:
            sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
        except socket.gaierror as exc:
            reason = f"cannot resolve host name {target.hostname!r}: {exc.strerror}"
            raise HostUnreachable(self._host, reason) from exc
        except UnicodeError as exc:  # the idna codec: a label over 63 characters (ssh_config)
            problem = host_name_problem(target.hostname) or describe_exception(exc)
            reason = f"{target.hostname} is not a valid host name: {problem}"
            raise HostUnreachable(self._host, reason) from exc
        except ConnectionRefusedError as exc:
            reason = f"connection refused on {self._where}: is sshd running and the port right?"
            raise HostUnreachable(self._host, reason) from exc
        except TimeoutError as exc:
            reason = f"no answer from {self._where} within {timeout:g}s: host down or firewalled?"
            raise HostUnreachable(self._host, reason) from exc
        except OSError as exc:
            reason = f"cannot connect to {self._where}: {exc.strerror or exc}"
            raise HostUnreachable(self._host, reason) from exc
        # paramiko leaves Nagle on: ~40 ms per channel open (FIELD-NOTES).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return None, sock

    def _open_jump(self, proxy_jump: str) -> tuple[SshTransport, paramiko.Channel]:
        """Connect to the last ProxyJump hop (reached through the hops before it) and open a
        ``direct-tcpip`` channel from it to the target."""
        hops = [hop.strip() for hop in proxy_jump.split(",") if hop.strip()]
        chain = (*self._jumps, hops[-1])
        if hops[-1] in self._jumps or len(chain) > MAX_JUMP_HOPS:
            reason = f"ProxyJump loop: {' -> '.join(chain)} (does a Host * match a jump host?)"
            raise HostUnreachable(self._host, reason)
        target = resolve(hops[-1], config_file=self._target.config_file)
        if len(hops) > 1:  # like `ssh -J a,b`: the earlier hops replace b's own ProxyJump
            target = replace(target, proxy_jump=",".join(hops[:-1]), proxy_command=None)
        jump = SshTransport(hops[-1], target, connect_timeout=self._connect_timeout)
        jump._jumps = chain
        try:
            channel = jump._connected().open_channel(
                "direct-tcpip",
                (self._target.hostname, self._target.port),
                ("127.0.0.1", 0),
                timeout=self._connect_timeout,
            )
        except TransportError as exc:
            raise type(exc)(self._host, f"jump host {exc}") from exc
        except paramiko.SSHException as exc:  # ChannelException(2, "Connect failed"), ...
            jump.close()
            reason = f"jump host {hops[-1]} cannot open a channel to {self._address}: {exc}"
            raise HostUnreachable(self._host, reason) from exc
        return jump, channel

    def _handshake(self, transport: paramiko.Transport) -> None:
        """Key exchange and host key check: nothing about us has been sent yet."""
        timeout = self._connect_timeout
        transport.banner_timeout = transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        target = self._target
        known_hosts = load_known_hosts(
            [*target.user_known_hosts_files, *target.global_known_hosts_files]
        )
        # Ask for a key type we know first, as OpenSSH orders HostKeyAlgorithms.
        known_types = {e.key.key_type for e in known_hosts.for_names(host_key_names(target))}
        if "ssh-rsa" in known_types:
            known_types |= {"rsa-sha2-512", "rsa-sha2-256"}
        options = transport.get_security_options()
        options.key_types = sorted(options.key_types, key=lambda name: name not in known_types)
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            reason = f"SSH handshake with {self._where} failed: {describe_exception(exc)}"
            if isinstance(transport.sock, _ProxyCommand):
                reason += transport.sock.failure()
            raise HostUnreachable(self._host, reason) from exc
        try:
            server_key = transport.get_remote_server_key()
        except paramiko.SSHException as exc:  # start_client() returns quietly on timeout
            reason = f"no SSH handshake with {self._where} within {timeout:g}s"
            raise HostUnreachable(self._host, reason) from exc
        known_hosts.check(self._host, target, HostKey(server_key.get_name(), server_key.asbytes()))

    def _authenticate(self, transport: paramiko.Transport) -> None:
        """Offer ssh-agent keys, then identity files, as ssh does (honouring IdentitiesOnly).

        Raises:
            AuthenticationFailed: every key was rejected, or there was none to offer.
        """
        user = self._target.user
        agent = _agent()
        try:
            offered, notes = _auth_keys(self._target, agent)
            for label, key in offered:
                try:
                    remaining = transport.auth_publickey(user, key)
                except paramiko.AuthenticationException:
                    continue
                except paramiko.SSHException as exc:  # the server hung up (MaxAuthTries?)
                    notes.append(f"the server closed the connection after {label}: {exc}")
                    break
                if not remaining:
                    log.debug("%s: authenticated as %s with %s", self._host, user, label)
                    return
                notes.append(f"the server also wants {', '.join(remaining)} (not supported)")
        finally:
            if agent is not None:
                agent.close()
        tried = "; ".join(label for label, _ in offered) or "none: no agent key, no identity file"
        notes.insert(0, f"{user}@{self._where} rejected every key offered ({tried})")
        raise AuthenticationFailed(self._host, ". ".join(notes))

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        """Run ``argv`` on the host; see `Transport.run` (and `connect`) for what it raises.

        ``timeout`` covers waiting for a free session and the command, not connecting.
        """
        if not argv:
            raise ValueError("run() needs a command")
        command = remote_command_line(argv, become=self._become)
        transport = self._connected()
        log.debug("%s$ %s", self._host, masked(command), extra={"host": self._host})
        deadline = time.monotonic() + timeout
        if not self._sessions.acquire(timeout=timeout):
            raise CommandTimeout(self._host, f"{argv[0]}: no free SSH session within {timeout:g}s")
        try:
            channel = self._start(transport, command, argv[0], deadline)
            try:
                stdout, stderr = self._drain(channel, argv[0], deadline)
                status = self._exit_status(channel, transport, argv[0], deadline)
            finally:
                channel.close()
        finally:
            self._sessions.release()
        out, err = (data.decode("utf-8", errors="replace") for data in (stdout, stderr))
        result = CommandResult(tuple(argv), status, out, err)
        if check and not result.ok:
            raise CommandFailed(self._host, argv, result.exit_status, result.stderr)
        return result

    def open_stream(self, argv: Sequence[str]) -> LineStream:
        """Run ``argv`` on a channel of its own and stream its stdout lines (stderr is
        dropped); closing the stream closes the channel and with it the command's stdin.

        Raises:
            ConnectionLost, CommandTimeout: as `run`, while opening the channel.
        """
        command = remote_command_line(argv, become=self._become)
        transport = self._connected()
        log.debug("%s$ %s &", self._host, masked(command), extra={"host": self._host})
        deadline = time.monotonic() + self._connect_timeout
        if not self._sessions.acquire(timeout=self._connect_timeout):
            raise CommandTimeout(self._host, f"{argv[0]}: no free SSH session")
        try:
            channel = self._start(transport, command, argv[0], deadline)
        except BaseException:
            self._sessions.release()
            raise

        def close() -> None:
            channel.close()
            self._sessions.release()

        return LineStream(lambda: channel.recv(_CHUNK), close, f"{self._host} stream")

    def _start(
        self, transport: paramiko.Transport, command: str, program: str, deadline: float
    ) -> paramiko.Channel:
        """A new session channel (no pty) running ``command``."""
        delay = 0.05
        while True:
            try:
                channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.01))
            except paramiko.ChannelException as exc:
                # The server's MaxSessions is below our cap, or its slots free late: retry.
                if time.monotonic() + delay >= deadline:
                    reason = f"{program}: the host refused a new session: {exc}"
                    raise CommandTimeout(self._host, reason) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except paramiko.SSHException as exc:
                if not transport.is_active():
                    raise ConnectionLost(self._host, f"connection lost: {exc}") from exc
                raise CommandTimeout(self._host, f"{program}: {exc}") from exc
            try:
                channel.exec_command(command)
            except paramiko.SSHException as exc:
                channel.close()
                raise ConnectionLost(self._host, f"{program} could not start: {exc}") from exc
            return channel

    def _drain(
        self, channel: paramiko.Channel, program: str, deadline: float
    ) -> tuple[bytes, bytes]:
        """Read stdout and stderr together until EOF, so neither fills its 2 MiB window."""
        stdout, stderr = bytearray(), bytearray()
        while True:
            at_eof = channel.eof_received or channel.closed
            while channel.recv_ready():
                stdout += channel.recv(_CHUNK)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(_CHUNK)
            if at_eof:
                return bytes(stdout), bytes(stderr)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(channel, program)
            # fileno() is a pipe that paramiko sets on data, EOF and close, for select().
            select.select([channel], [], [], min(remaining, 5.0))

    def _exit_status(
        self,
        channel: paramiko.Channel,
        transport: paramiko.Transport,
        program: str,
        deadline: float,
    ) -> int:
        # recv_exit_status() has no timeout (FIELD-NOTES): wait on the event instead.
        if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
            raise self._timed_out(channel, program)
        status = channel.recv_exit_status()
        if status == -1 and not transport.is_active():
            reason = f"the connection died while {program} ran; it may still be running there"
            raise ConnectionLost(self._host, reason)
        return status  # -1 with a live connection: killed by a signal (paramiko drops which)

    def _timed_out(self, channel: paramiko.Channel, program: str) -> CommandTimeout:
        channel.close()  # does not stop a command without a pty (FIELD-NOTES)
        reason = f"{program} did not finish in time; it may still be running on the host"
        return CommandTimeout(self._host, reason)

    def alive(self, timeout: float) -> bool:
        """Whether the server answers a ``keepalive@openssh.com`` request within ``timeout``.

        ``set_keepalive`` cannot detect a dead server (FIELD-NOTES). On a miss the connection
        is closed, which wakes every `run` blocked on it (they raise `ConnectionLost`).
        """
        transport = self._transport
        if transport is None or not transport.is_active():
            return False
        answered = threading.Event()

        def ask() -> None:  # global_request(wait=True) has no timeout of its own
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                transport.global_request("keepalive@openssh.com", wait=True)
                answered.set()

        with self._keepalive_lock:  # paramiko has one completion event per transport
            threading.Thread(target=ask, name=f"keepalive {self._host}", daemon=True).start()
            if answered.wait(timeout) and transport.is_active():
                return True
        log.warning("%s: no keepalive answer within %gs: closing", self._host, timeout)
        self.close()
        return False

    def close(self) -> None:
        """Close the connection (and any jump host's); safe to call more than once."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        transport, jump = self._transport, self._jump
        self._transport = self._jump = None
        if transport is not None:
            transport.close()
        if jump is not None:
            jump.close()


def _agent() -> paramiko.Agent | None:
    try:
        return paramiko.Agent()
    except paramiko.SSHException as exc:
        log.debug("ssh-agent unusable: %s", exc)
        return None


def _auth_keys(
    target: SshTarget, agent: paramiko.Agent | None
) -> tuple[list[tuple[str, paramiko.PKey]], list[str]]:
    """The keys to offer, labelled for messages, and notes on identity files we cannot use.

    Like ssh, an IdentityFile may name a key that only the agent holds (by its ``.pub``).
    """
    identities = []  # (path, private key if it loads, public key blob if known)
    for path in target.identity_files:
        public = path if path.name.endswith(".pub") else path.with_name(path.name + ".pub")
        if path.is_file() or public.is_file():
            key = _load_identity(path) if path != public and path.is_file() else None
            identities.append((path, key, key.asbytes() if key else _public_blob(public)))
    wanted = {blob for _, _, blob in identities if blob}
    offered: list[tuple[str, paramiko.PKey]] = []
    for key in agent.get_keys() if agent is not None else ():
        # IdentitiesOnly: only agent keys that belong to an IdentityFile, as ssh does.
        if not target.identities_only or not identities or key.asbytes() in wanted:
            offered.append((f"agent key {key.fingerprint} {key.comment}".rstrip(), key))
    seen: set[bytes | None] = {key.asbytes() for _, key in offered}
    notes = []
    for path, identity, blob in identities:
        if blob in seen:
            continue
        if identity is None:
            notes.append(f"{path} is unusable (passphrase-protected and not in ssh-agent?)")
        else:
            offered.append((f"{path} ({identity.fingerprint})", identity))
            seen.add(blob)
    return offered, notes


def _public_blob(path: Path) -> bytes | None:
    """The key blob of an OpenSSH public key file (``type base64 comment``)."""
    try:
        return base64.b64decode(path.read_text(encoding="utf-8").split()[1], validate=True)
    except (OSError, IndexError, ValueError):
        return None


def _load_identity(path: Path) -> paramiko.PKey | None:
    try:
        return paramiko.PKey.from_path(path)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        log.debug("%s is passphrase-protected: only usable through ssh-agent", path)
    except (OSError, ValueError, paramiko.SSHException) as exc:
        log.debug("cannot load identity %s: %s", path, exc)
    return None
