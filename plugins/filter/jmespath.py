# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The qmp.balloon.jmespath filter: JMESPath queries over data, with no other collection needed."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.qmp.balloon.plugins.plugin_utils._data import plain


def jmespath_query(data, expression):
    # imported when called: ansible-core imports every filter file of the collection when a worker
    # first resolves any of its filters (plugins/plugin_utils/_lazy.py)
    try:
        import jmespath  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise AnsibleFilterError('the qmp.balloon.jmespath filter needs the Python library jmespath on the controller '
                                 '(pip install jmespath)') from None
    if not isinstance(expression, str) or not expression.strip():
        raise AnsibleFilterError('qmp.balloon.jmespath: the expression must be a non-empty string, got %r' % (expression,))
    try:
        return jmespath.search(str(expression), plain(data))
    except jmespath.exceptions.JMESPathError as exc:
        raise AnsibleFilterError('qmp.balloon.jmespath: invalid expression %r: %s' % (str(expression), exc))


class FilterModule(object):

    def filters(self):
        return {'jmespath': jmespath_query}
