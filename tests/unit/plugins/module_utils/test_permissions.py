# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A socket the user may not write to: refused before any VM is touched, as a real non-root user."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _targets

NOBODY = 65534


def _as_nobody(function, *args):
    """Run function(*args) in a child that dropped to uid/gid nobody; return its result text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            text = repr(function(*args))
        except BaseException as exc:  # pylint: disable=broad-except
            text = 'child error: %r' % exc
        os.write(write_end, text.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b''.join(chunks).decode()


@pytest.fixture
def root_socket():
    if os.geteuid() != 0:
        pytest.skip('needs root to create a socket that another user may not use')
    directory = tempfile.mkdtemp(prefix='qb-perm-')
    os.chmod(directory, 0o755)
    path = os.path.join(directory, 'vm.qmp')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    os.chmod(path, 0o600)
    yield path
    server.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_socket_without_permission_is_refused_for_a_non_root_user(root_socket):
    text = _as_nobody(_targets.check_socket_path, root_socket, 'targets[0].socket')
    assert text.startswith("'targets[0].socket: permission denied on %s" % root_socket), text
    # root may use it: the same check passes
    assert _targets.check_socket_path(root_socket, 'socket') is None


def test_socket_in_a_directory_without_access_is_refused(root_socket):
    os.chmod(os.path.dirname(root_socket), 0o700)
    text = _as_nobody(_targets.check_socket_path, root_socket, 'socket')
    assert text.startswith("'socket: permission denied reaching %s" % root_socket), text
