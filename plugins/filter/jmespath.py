# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The qmp.balloon.jmespath filter: JMESPath queries over data, with no other collection needed."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False


def _plain(data):
    """Turn Ansible's tagged/lazy containers into plain Python ones that jmespath understands."""
    if isinstance(data, dict):
        return dict((str(key), _plain(value)) for key, value in data.items())
    if isinstance(data, (list, tuple)):
        return [_plain(item) for item in data]
    if isinstance(data, str):
        return str(data)
    return data


def jmespath_query(data, expression):
    if not HAS_JMESPATH:
        raise AnsibleFilterError('the qmp.balloon.jmespath filter needs the Python library jmespath on the controller '
                                 '(pip install jmespath)')
    if not isinstance(expression, str) or not expression.strip():
        raise AnsibleFilterError('qmp.balloon.jmespath: the expression must be a non-empty string, got %r' % (expression,))
    try:
        return jmespath.search(str(expression), _plain(data))
    except jmespath.exceptions.JMESPathError as exc:
        raise AnsibleFilterError('qmp.balloon.jmespath: invalid expression %r: %s' % (str(expression), exc))


class FilterModule(object):

    def filters(self):
        return {'jmespath': jmespath_query}
