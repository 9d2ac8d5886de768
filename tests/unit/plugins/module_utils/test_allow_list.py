# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The allow-list: anything outside it is refused before the socket is written."""

from __future__ import annotations

import asyncio

import pytest

from ansible_collections.qmp.balloon.plugins.module_utils import _qmp
from ansible_collections.qmp.balloon.plugins.module_utils._errors import BalloonNotFound, CommandNotAllowed


class RecordingClient(object):
    """Stands in for qemu.qmp's QMPClient after negotiation; records what would be written."""

    def __init__(self):
        self.sent = []

    async def run(self, command, arguments=None):
        self.sent.append((command, arguments))
        return {}


def _session_with(client):
    session = _qmp.QMPSession(_qmp.Endpoint(path='/nonexistent.qmp'), timeout=5)
    session._client = client
    return session


async def _execute(session, command, arguments):
    session._deadline = asyncio.get_running_loop().time() + 5
    return await session.execute(command, arguments)


def test_allow_list_is_exactly_the_documented_set():
    assert _qmp.ALLOWED_COMMANDS == frozenset([
        'qmp_capabilities', 'qom-list', 'qom-get', 'qom-set',
        'query-status', 'query-name', 'query-uuid', 'query-balloon'])
    assert _qmp.WRITABLE_PROPERTIES == frozenset(['guest-stats-polling-interval'])


@pytest.mark.parametrize('command, arguments', [
    ('quit', None),
    ('system_powerdown', None),
    ('human-monitor-command', {'command-line': 'info status'}),
    ('balloon', {'value': 1}),
    ('stop', None),
    ('device_del', {'id': 'balloon0'}),
    ('qom-set', {'path': '/machine/peripheral/balloon0', 'property': 'guest-stats', 'value': {}}),
    ('qom-set', {'path': '/machine', 'property': 'memory-backend', 'value': 'x'}),
    ('qom-set', None),
    ('QOM-GET', {'path': '/', 'property': 'type'}),
])
def test_refused_before_anything_is_written(command, arguments):
    client = RecordingClient()
    session = _session_with(client)
    with pytest.raises(CommandNotAllowed):
        asyncio.run(_execute(session, command, arguments))
    assert client.sent == []
    assert session.commands_sent == 0


@pytest.mark.parametrize('command, arguments', [
    ('qom-list', {'path': '/machine/peripheral'}),
    ('qom-get', {'path': 'balloon0', 'property': 'guest-stats'}),
    ('qom-set', {'path': 'balloon0', 'property': 'guest-stats-polling-interval', 'value': 5}),
    ('query-status', None),
    ('query-name', None),
    ('query-uuid', None),
    ('query-balloon', None),
])
def test_allowed_commands_reach_the_client(command, arguments):
    client = RecordingClient()
    session = _session_with(client)
    asyncio.run(_execute(session, command, arguments))
    assert client.sent == [(command, arguments)]


def test_writes_wait_for_the_verification_and_are_dropped_when_it_fails():
    """A qom-set is held until the path's verification is done; a failed one means no write."""
    async def scenario():
        client = RecordingClient()
        session = _session_with(client)
        loop = asyncio.get_running_loop()
        passed, failed = loop.create_future(), loop.create_future()
        session.hold_writes_until(passed)
        write = asyncio.ensure_future(_execute(
            session, 'qom-set', {'path': '/machine/peripheral/b', 'property': 'guest-stats-polling-interval', 'value': 1}))
        reads = await _execute(session, 'qom-get', {'path': '/machine/peripheral/b', 'property': 'guest-stats'})
        await asyncio.sleep(0.01)
        assert not write.done() and [sent[0] for sent in client.sent] == ['qom-get']
        passed.set_result('/machine/peripheral/b')
        await write
        assert [sent[0] for sent in client.sent] == ['qom-get', 'qom-set']

        client2 = RecordingClient()
        session2 = _session_with(client2)
        session2.hold_writes_until(failed)
        failed.set_exception(BalloonNotFound('qom_path /x is not a virtio-balloon device'))
        with pytest.raises(BalloonNotFound):
            await _execute(session2, 'qom-set', {'path': '/x', 'property': 'guest-stats-polling-interval', 'value': 1})
        assert client2.sent == []
        assert reads == {}

    asyncio.run(scenario())
