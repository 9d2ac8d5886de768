# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The allow-list: anything outside it is refused before the socket is written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from ansible_collections.qmp.balloon.plugins.doc_fragments._common import ModuleDocFragment
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
        'query-status', 'query-name', 'x-query-virtio-status'])
    assert _qmp.WRITABLE_PROPERTIES == frozenset(['guest-stats-polling-interval'])


COLLECTION_ROOT = Path(__file__).resolve().parents[4]


def _commands_in(text):
    """The QMP command names written as code in ``text`` (`qom-get`, C(qom-get)), the property name left out."""
    return set(re.findall(r'(?:`|C\()([a-z][a-z_-]+)(?:`|\))', text)) - set(_qmp.WRITABLE_PROPERTIES)


def _section(text, start, end):
    """From ``start`` to the first match of the regular expression ``end`` after it."""
    begin = text.index(start)
    return text[begin:re.compile(end).search(text, begin).start()]


@pytest.mark.parametrize('where, start, end', [
    ('README.md', '- The modules send only', 'No raw QMP pass-through'),
    ('docs/security.md', '| command | used for |', 'There is no raw QMP pass-through'),
    # The note ends with its last indented line.
    ('plugins/doc_fragments/_common.py', 'Only these QMP commands are ever sent', r'\n(?!    )'),
])
def test_the_documentation_lists_the_allow_list_of_the_code(where, start, end):
    """README.md, docs/security.md and the modules' notes name exactly ALLOWED_COMMANDS, and qom-set only of the interval."""
    if where.endswith('.py'):
        text = ModuleDocFragment.DOCUMENTATION
    else:
        text = (COLLECTION_ROOT / where).read_text(encoding='utf-8')
    listed = _section(text, start, end)
    if listed.startswith('|'):
        # The table's first column names the commands; the second says what they read.
        assert '`qom-set` | writing `%s` — and no other property' % _qmp.POLLING_PROPERTY in listed
        listed = '\n'.join(row.split('|')[1] for row in listed.splitlines()[2:] if row.startswith('|'))
    else:
        assert 'qom-set) on C(%s) only' % _qmp.POLLING_PROPERTY in listed or '`qom-set` of `%s`' % _qmp.POLLING_PROPERTY in listed
    assert _commands_in(listed) == _qmp.ALLOWED_COMMANDS


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
    # Harmless, but never needed: not in the list (only what is sent is allowed).
    ('query-uuid', None),
    ('query-balloon', None),
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
    ('x-query-virtio-status', {'path': '/machine/peripheral/balloon0/virtio-backend'}),
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
